//! The technician's login: one password (an Argon2 hash in the config),
//! random session tokens held in memory only, and a lock-out after repeated
//! failures. Time comes from [`Clocks`] so that tests expire sessions and
//! lock-outs without waiting.

use crate::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

use crate::clock::Clocks;

/// The cookie that carries a session token.
pub const COOKIE: &str = "anpr_session";

/// What a login attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// A new session token.
    Ok(String),
    Wrong,
    /// Logins are refused for this much longer; the password was not checked.
    LockedOut(Duration),
    /// No password is configured: nobody can log in.
    NoPassword,
}

#[derive(Default)]
struct Failures {
    in_a_row: u32,
    locked_until: Option<Duration>,
}

/// Sessions and failure counts. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Auth {
    hash: Option<Arc<str>>,
    clocks: Arc<dyn Clocks>,
    session_for: Duration,
    lockout_after: u32,
    lockout_for: Duration,
    sessions: Arc<Mutex<HashMap<String, Duration>>>,
    failures: Arc<Mutex<Failures>>,
}

/// The PHC string of `password` with a fresh random salt, for the config.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Auth {
    pub fn new(
        hash: Option<String>,
        clocks: Arc<dyn Clocks>,
        session_for: Duration,
        lockout_after: u32,
        lockout_for: Duration,
    ) -> Self {
        Auth {
            hash: hash.map(Arc::from),
            clocks,
            session_for,
            lockout_after: lockout_after.max(1),
            lockout_for,
            sessions: Arc::default(),
            failures: Arc::default(),
        }
    }

    pub fn session_for(&self) -> Duration {
        self.session_for
    }

    /// Checks `password` and opens a session. Blocking (Argon2 takes tens of
    /// milliseconds on purpose): call it off the async threads.
    pub fn login(&self, password: &str) -> Login {
        self.attempt(password, true)
    }

    /// Checks `password` for one request (HTTP Basic, e.g. a Prometheus
    /// scraper) without opening a session; `Login::Ok` then holds no token.
    /// Failures count towards the lock-out all the same.
    pub fn check(&self, password: &str) -> Login {
        self.attempt(password, false)
    }

    fn attempt(&self, password: &str, open_session: bool) -> Login {
        let Some(hash) = &self.hash else {
            return Login::NoPassword;
        };
        let now = self.clocks.monotonic();
        {
            let mut f = self.failures.lock_unpoisoned();
            match f.locked_until {
                Some(until) if now < until => return Login::LockedOut(until - now),
                Some(_) => *f = Failures::default(),
                None => {}
            }
        }
        if !verify(hash, password) {
            let mut f = self.failures.lock_unpoisoned();
            f.in_a_row += 1;
            if f.in_a_row >= self.lockout_after {
                f.locked_until = Some(now + self.lockout_for);
                return Login::LockedOut(self.lockout_for);
            }
            return Login::Wrong;
        }
        *self.failures.lock_unpoisoned() = Failures::default();
        if !open_session {
            return Login::Ok(String::new());
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let mut sessions = self.sessions.lock_unpoisoned();
        // Expired sessions are dropped here, so the map cannot grow without bound.
        sessions.retain(|_, until| *until > now);
        sessions.insert(token.clone(), now + self.session_for);
        Login::Ok(token)
    }

    /// Whether `token` is a live session.
    pub fn session_valid(&self, token: &str) -> bool {
        let now = self.clocks.monotonic();
        let mut sessions = self.sessions.lock_unpoisoned();
        match sessions.get(token) {
            Some(until) if *until > now => true,
            Some(_) => {
                sessions.remove(token);
                false
            }
            None => false,
        }
    }

    pub fn logout(&self, token: &str) {
        self.sessions.lock_unpoisoned().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimulatedClocks;

    fn auth(clocks: Arc<SimulatedClocks>) -> Auth {
        let hash = hash_password("correct horse").expect("hash");
        Auth::new(
            Some(hash),
            clocks,
            Duration::from_secs(600),
            3,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_session_lasts_its_time_and_no_longer() {
        let clocks = Arc::new(SimulatedClocks::new(chrono::Utc::now()));
        let a = auth(clocks.clone());
        let Login::Ok(token) = a.login("correct horse") else {
            panic!("login fails")
        };
        assert!(a.session_valid(&token));
        assert!(!a.session_valid("0000"));
        clocks.advance(Duration::from_secs(599));
        assert!(a.session_valid(&token));
        clocks.advance(Duration::from_secs(2));
        assert!(!a.session_valid(&token));
    }

    #[test]
    fn repeated_failures_lock_out_even_the_right_password_until_the_time_is_up() {
        let clocks = Arc::new(SimulatedClocks::new(chrono::Utc::now()));
        let a = auth(clocks.clone());
        assert_eq!(a.login("guess 1"), Login::Wrong);
        assert_eq!(a.login("guess 2"), Login::Wrong);
        assert!(matches!(a.login("guess 3"), Login::LockedOut(_)));
        clocks.advance(Duration::from_secs(30));
        assert_eq!(
            a.login("correct horse"),
            Login::LockedOut(Duration::from_secs(30))
        );
        clocks.advance(Duration::from_secs(31));
        assert!(matches!(a.login("correct horse"), Login::Ok(_)));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let a = auth(Arc::new(SimulatedClocks::new(chrono::Utc::now())));
        assert_eq!(a.login("x"), Login::Wrong);
        assert_eq!(a.login("y"), Login::Wrong);
        assert!(matches!(a.login("correct horse"), Login::Ok(_)));
        assert_eq!(a.login("z"), Login::Wrong);
    }

    #[test]
    fn without_a_password_nobody_logs_in_and_logout_ends_a_session() {
        let clocks = Arc::new(SimulatedClocks::new(chrono::Utc::now()));
        let none = Auth::new(
            None,
            clocks.clone(),
            Duration::from_secs(1),
            3,
            Duration::ZERO,
        );
        assert_eq!(none.login(""), Login::NoPassword);
        let a = auth(clocks);
        let Login::Ok(token) = a.login("correct horse") else {
            panic!("login fails")
        };
        a.logout(&token);
        assert!(!a.session_valid(&token));
    }
}
