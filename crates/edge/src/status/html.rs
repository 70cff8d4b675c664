//! The status page's HTML: server-rendered, self-contained (no asset from the
//! network: controllers are offline), large black-on-white type that stays
//! readable on a phone in daylight, and state always in words as well as in
//! colour. A few lines of inline script refresh the page.

use std::fmt::Write;

use super::snapshot::Analysis;
use super::view::{human_s, human_us, Alarm, CameraView, Storage, Uploads};
use super::DeviceFacts;
use crate::clock::SyncState;
use crate::policy::lists::{ListState, ListsStatus};

/// Escapes text for HTML bodies and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment for a link.
fn url_seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:18px/1.4 system-ui,sans-serif;background:#fff;color:#000}
header{background:#000;color:#fff;padding:.5em 1em;display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:baseline}
header a{color:#fff}
main{padding:.5em 1em;max-width:70em}
h1{font-size:1.3em;margin:0}
h2{font-size:1.15em;margin:1.2em 0 .3em;border-bottom:3px solid #000}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.25em .5em .25em 0;border-bottom:1px solid #888;vertical-align:top}
th{font-weight:600;width:40%}
.ok{background:#006400;color:#fff;padding:0 .4em;font-weight:700}
.bad{background:#b00000;color:#fff;padding:0 .4em;font-weight:700}
.warn{background:#000;color:#ff0;padding:0 .4em;font-weight:700}
.alarm{border:4px solid #b00000;padding:.4em .6em;margin:.4em 0}
.alarm b{display:block}
.cams a{font-weight:700;color:#000}
img.snap{width:100%;height:auto;border:2px solid #000;background:#333}
form{max-width:22em}
input,button{font:inherit;padding:.5em;width:100%;margin:.3em 0;border:2px solid #000}
button{background:#000;color:#fff;font-weight:700}
.hist{display:flex;align-items:flex-end;height:4em;gap:1px;border-bottom:2px solid #000}
.hist span{flex:1;background:#000}
small{color:#333}
"#;

fn page(title: &str, device: &str, body: &str, script: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>{t} · {d}</title><style>{STYLE}</style></head><body>\
<header><h1>{d}</h1><a href=\"/\">overview</a><form method=post action=\"/logout\" style=\"margin-left:auto;width:auto\"><button style=\"width:auto;padding:.2em .6em;border-color:#fff\">log out</button></form></header>\
<main>{body}</main><script>{script}</script></body></html>",
        t = esc(title),
        d = esc(device),
    )
}

pub fn login(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=bad id=message>{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\"><title>anpr-edge login</title>\
<style>{STYLE}</style></head><body><header><h1>anpr-edge status</h1></header><main>\
<h2>Technician login</h2>{msg}<form method=post action=\"/login\">\
<label for=password>Password</label><input type=password id=password name=password autocomplete=current-password autofocus required>\
<button type=submit id=login>Log in</button></form></main></body></html>"
    )
}

fn yes_no(ok: bool, yes: &str, no: &str) -> String {
    if ok {
        format!("<span class=ok>{}</span>", esc(yes))
    } else {
        format!("<span class=bad>{}</span>", esc(no))
    }
}

fn bytes(b: u64) -> String {
    let gb = b as f64 / 1e9;
    if gb >= 1.0 {
        format!("{gb:.1} GB")
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

fn age(s: Option<i64>, none: &str) -> String {
    s.map(|s| format!("{} ago", human_s(s)))
        .unwrap_or_else(|| none.to_string())
}

fn condition(c: &CameraView) -> String {
    let class = match c.condition {
        "streaming" | "finished" => "ok",
        "starting" => "warn",
        _ => "bad",
    };
    format!("<span class={class}>{}</span>", c.condition)
}

fn alarm_list(alarms: &[Alarm]) -> String {
    if alarms.is_empty() {
        return "<p><span class=ok>no alarms</span></p>".into();
    }
    alarms
        .iter()
        .map(|a| {
            format!(
                "<div class=alarm id=\"alarm-{}\"><b>{}</b>What to do: {}</div>",
                a.id,
                esc(&a.what),
                esc(a.todo)
            )
        })
        .collect()
}

fn list_row(name: &str, l: Option<&ListState>) -> String {
    match l {
        Some(l) => format!(
            "<tr><th>{name}</th><td>version {} · {} entries · {} old</td></tr>",
            l.version,
            l.entries,
            human_s(l.age_s)
        ),
        None => format!("<tr><th>{name}</th><td>none in force</td></tr>"),
    }
}

pub struct OverviewPage<'a> {
    pub facts: &'a DeviceFacts,
    pub uptime_s: u64,
    pub clock: SyncState,
    pub storage: &'a Storage,
    pub uploads: &'a Uploads,
    pub lists: Option<&'a ListsStatus>,
    pub cameras: &'a [CameraView],
    pub alarms: &'a [Alarm],
}

pub fn overview(p: &OverviewPage<'_>) -> String {
    let f = p.facts;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h2>Alarms</h2><div id=alarms>{}</div>",
        alarm_list(p.alarms)
    );
    b.push_str("<h2>Cameras</h2><table class=cams id=cameras><tr><th>camera</th><th>state</th><th>frames/s in · processed · dropped</th><th>last frame</th></tr>");
    for c in p.cameras {
        let rates = c
            .rates
            .map(|r| {
                format!(
                    "{:.1} · {:.1} · {:.1}",
                    r.frames_in, r.frames_processed, r.frames_dropped
                )
            })
            .unwrap_or_else(|| "measuring…".into());
        let _ = write!(
            b,
            "<tr><td><a href=\"/cameras/{}\">{}</a></td><td>{}</td><td>{rates}</td><td>{}</td></tr>",
            url_seg(&c.counters.id),
            esc(&c.counters.id),
            condition(c),
            c.last_frame_age_s
                .map(|a| format!("{a:.1} s ago"))
                .unwrap_or_else(|| "none yet".into())
        );
    }
    b.push_str("</table>");
    let _ = write!(
        b,
        "<h2>Device</h2><table id=device>\
<tr><th>device id</th><td>{}</td></tr>\
<tr><th>software</th><td>{}</td></tr>\
<tr><th>models</th><td>{}</td></tr>\
<tr><th>runtime</th><td>{}</td></tr>\
<tr><th>up for</th><td>{}</td></tr>\
<tr><th>clock</th><td>{} · maximum error {}</td></tr></table>",
        esc(&f.device_id),
        esc(&f.software_version),
        esc(&f.model_versions),
        esc(&f.runtime_version),
        human_s(p.uptime_s as i64),
        yes_no(
            p.clock.synchronised && p.clock.max_error_us <= super::view::CLOCK_ERROR_LIMIT_US,
            "synchronised",
            if p.clock.synchronised {
                "imprecise"
            } else {
                "not synchronised"
            }
        ),
        human_us(p.clock.max_error_us),
    );
    let u = p.uploads;
    let _ = write!(
        b,
        "<h2>Store and upload</h2><table id=upload>\
<tr><th>disk</th><td>{:.0}% used · {} free of {}</td></tr>\
<tr><th>store</th><td>{}{}</td></tr>\
<tr><th>waiting for upload</th><td>{} violation(s){}</td></tr>\
<tr><th>last upload</th><td>{}</td></tr>\
<tr><th>last failure</th><td>{}</td></tr></table>",
        p.storage.fs_used_percent,
        bytes(p.storage.fs_free_bytes),
        bytes(p.storage.fs_total_bytes),
        bytes(p.storage.store_bytes),
        if p.storage.budget_bytes > 0 {
            format!(
                " · budget {} of {} used",
                bytes(p.storage.budget_used_bytes),
                bytes(p.storage.budget_bytes)
            )
        } else {
            String::new()
        },
        u.pending,
        u.oldest_pending_age_s
            .map(|a| format!(", oldest {}", human_s(a)))
            .unwrap_or_default(),
        age(u.last_success_age_s, "none since start"),
        match (&u.last_failure_reason, u.last_failure_age_s) {
            (Some(r), a) => format!("{}: {}", age(a, "?"), esc(r)),
            _ => "none since start".into(),
        }
    );
    b.push_str("<h2>Zone lists</h2><table id=lists>");
    match p.lists {
        Some(l) => {
            let _ = write!(b, "<tr><th>zone</th><td>{}</td></tr>", esc(&l.zone));
            b.push_str(&list_row("hit list", l.hit_list.as_ref()));
            b.push_str(&list_row("exemptions", l.exemptions.as_ref()));
            if let Some(e) = &l.last_error {
                let _ = write!(b, "<tr><th>last error</th><td>{}</td></tr>", esc(e));
            }
        }
        None => b.push_str("<tr><td>no lists configured</td></tr>"),
    }
    b.push_str("</table><p><small>Refreshes every 5 s. JSON: <a href=\"/api/v1/status\">/api/v1/status</a> · Prometheus: <a href=\"/metrics\">/metrics</a></small></p>");
    page(
        "overview",
        &f.device_id,
        &b,
        "setTimeout(function(){if(!document.hidden)location.reload();else document.onvisibilitychange=function(){location.reload()}},5000);",
    )
}

pub fn camera(device: &str, c: &CameraView, a: Option<&Analysis>) -> String {
    let id = esc(&c.counters.id);
    let seg = url_seg(&c.counters.id);
    let rates = c.rates.unwrap_or(super::view::Rates {
        frames_in: 0.0,
        frames_processed: 0.0,
        frames_dropped: 0.0,
    });
    let mut b = format!(
        "<h2>Camera {id} {}</h2><table id=camera>\
<tr><th>facing</th><td>{}</td></tr>\
<tr><th>frames/s in</th><td data-k=in>{:.1}</td></tr>\
<tr><th>frames/s processed</th><td data-k=processed>{:.1}</td></tr>\
<tr><th>frames/s dropped</th><td data-k=dropped>{:.1}</td></tr>\
<tr><th>last frame</th><td data-k=age>{}</td></tr>\
<tr><th>reads in the last hour</th><td data-k=reads>{}</td></tr>\
<tr><th>passages in the last hour</th><td data-k=passages>{}</td></tr></table>",
        condition(c),
        esc(&c.facing),
        rates.frames_in,
        rates.frames_processed,
        rates.frames_dropped,
        c.last_frame_age_s
            .map(|a| format!("{a:.1} s ago"))
            .unwrap_or_else(|| "none yet".into()),
        c.reads_last_hour,
        c.passages_last_hour,
    );
    let _ = write!(
        b,
        "<h2>Live view</h2><p><small>ROI yellow, lanes cyan, plates green when tall enough for the reader and red when not. \
Turn the focus for the highest focus score; keep the histogram off both ends.</small></p>\
<img class=snap id=snapshot alt=\"live snapshot of camera {id}\" src=\"/cameras/{seg}/snapshot.jpg\">\
<table id=analysis><tr><th>frame</th><td data-k=seq>{}</td></tr>\
<tr><th>focus score</th><td data-k=focus>{}</td></tr>\
<tr><th>exposure</th><td data-k=exposure>{}</td></tr>\
<tr><th>plates (height / needed)</th><td data-k=plates>{}</td></tr></table>",
        a.map(|a| a.seq.to_string()).unwrap_or_else(|| "none yet".into()),
        a.map(|a| format!("{:.0}", a.focus)).unwrap_or_default(),
        a.map(|a| format!(
            "mean {:.0} · {:.1}% black · {:.1}% white",
            a.mean_luma,
            100.0 * a.dark_share,
            100.0 * a.bright_share
        ))
        .unwrap_or_default(),
        a.map(plates_text).unwrap_or_default(),
    );
    let script = format!(
        r#"var cam="{seg}";function set(k,v){{var e=document.querySelector('[data-k="'+k+'"]');if(e)e.textContent=v}}
function tick(){{if(document.hidden)return;fetch("/api/v1/cameras/"+cam,{{credentials:"same-origin"}}).then(function(r){{if(r.status==401)location.href="/login";return r.json()}}).then(function(c){{var r=c.rates||{{frames_in:0,frames_processed:0,frames_dropped:0}};
set("in",r.frames_in.toFixed(1));set("processed",r.frames_processed.toFixed(1));set("dropped",r.frames_dropped.toFixed(1));
set("age",c.last_frame_age_s==null?"none yet":c.last_frame_age_s.toFixed(1)+" s ago");set("reads",c.reads_last_hour);set("passages",c.passages_last_hour);
var a=c.snapshot;if(a){{set("seq",a.seq);set("focus",a.focus.toFixed(0));set("exposure","mean "+a.mean_luma.toFixed(0)+" · "+(100*a.dark_share).toFixed(1)+"% black · "+(100*a.bright_share).toFixed(1)+"% white");
set("plates",a.plates.length?a.plates.map(function(p){{return p.height_px.toFixed(0)+" / "+p.needed_px+" px"+(p.tall_enough?"":" too small")+(p.in_roi?"":" outside ROI")}}).join(", "):"none in view");
var i=document.getElementById("snapshot");i.dataset.seq=a.seq;i.src="/cameras/"+cam+"/snapshot.jpg?seq="+a.seq}}}}).catch(function(){{}})}}
setInterval(tick,1000);"#
    );
    page(&format!("camera {}", c.counters.id), device, &b, &script)
}

fn plates_text(a: &Analysis) -> String {
    if a.plates.is_empty() {
        return "none in view".into();
    }
    a.plates
        .iter()
        .map(|p| {
            format!(
                "{:.0} / {} px{}{}",
                p.height_px,
                p.needed_px,
                if p.tall_enough { "" } else { " too small" },
                if p.in_roi { "" } else { " outside ROI" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_and_urls() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url_seg("pole 2/ä"), "pole%202%2F%C3%A4");
    }
}
