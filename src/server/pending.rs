//! Uploads made in steps, as anaconda.org's API makes them: `POST /stage`
//! reserves a package name and answers where to send the bytes; the file
//! arrives in a form POST that carries the reservation's id and secret
//! ticket instead of the token (the client sends it as it would to S3,
//! without its session's headers); `POST /commit` publishes it.
//!
//! Between the steps a reservation, and the file staged for it, live here
//! in memory for at most [`PENDING_TTL`] and at most [`MAX_PENDING`] at a
//! time. A restart forgets them (staging is emptied at start) and the
//! client starts over; nothing enters the channel before the commit.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::error::ApiError;
use crate::publish::Staged;
use crate::token::{Token, TokenHash};

/// How long a reservation waits for its file and its commit.
pub const PENDING_TTL: Duration = Duration::from_secs(60 * 60);

/// Reservations held at once; more are turned away (503) until some are
/// committed or expire, so a client cannot fill memory or the disk.
pub const MAX_PENDING: usize = 256;

/// What `/stage` was told: the package's place in the channel and the
/// sha256 the client computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub subdir: String,
    pub file_name: String,
    pub sha256: Option<String>,
}

/// A reservation's public id (sent back on commit) and its secret ticket
/// (which alone admits the file).
#[derive(Debug)]
pub struct Ticket {
    pub dist_id: String,
    pub secret: Token,
}

struct Pending {
    reservation: Reservation,
    ticket: TokenHash,
    expires: Instant,
    staged: Option<Staged>,
}

/// The reservations in progress, and what the upload URL starts with.
pub struct PendingUploads {
    entries: Mutex<HashMap<String, Pending>>,
    /// `https`, or `http` for a server speaking plain HTTP (whose proxy
    /// may say otherwise in `X-Forwarded-Proto`).
    pub scheme: &'static str,
}

impl PendingUploads {
    pub fn new(scheme: &'static str) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            scheme,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves a name; expired reservations (and their files) go first.
    pub fn reserve(&self, reservation: Reservation) -> Result<Ticket, ApiError> {
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, pending| pending.expires > now);
        if entries.len() >= MAX_PENDING {
            return Err(ApiError::Busy);
        }
        let dist_id: String = Token::generate().expose().chars().take(32).collect();
        let secret = Token::generate();
        entries.insert(
            dist_id.clone(),
            Pending {
                reservation,
                ticket: secret.hash(),
                expires: now + PENDING_TTL,
                staged: None,
            },
        );
        Ok(Ticket { dist_id, secret })
    }

    /// The reservation `dist_id` names, if `ticket` is its own (401
    /// otherwise, whether the id is unknown or the ticket wrong, so the
    /// answer tells an outsider nothing).
    pub fn admit(&self, dist_id: &str, ticket: &str) -> Result<Reservation, ApiError> {
        let entries = self.entries();
        match entries.get(dist_id) {
            Some(pending)
                if pending.ticket.matches(&Token::new(ticket))
                    && pending.expires > Instant::now() =>
            {
                Ok(pending.reservation.clone())
            }
            _ => Err(ApiError::Unauthorized),
        }
    }

    /// Keeps the file received for an admitted reservation (a repeated
    /// POST replaces the earlier file, which is removed).
    pub fn attach(&self, dist_id: &str, ticket: &str, staged: Staged) -> Result<(), ApiError> {
        self.admit(dist_id, ticket)?;
        if let Some(pending) = self.entries().get_mut(dist_id) {
            pending.staged = Some(staged);
        }
        Ok(())
    }

    /// Takes the reservation `dist_id` and its file for publishing, if it
    /// was made for `subdir/file_name` and its file has arrived.
    pub fn take(
        &self,
        dist_id: &str,
        subdir: &str,
        file_name: &str,
    ) -> Result<(Reservation, Staged), ApiError> {
        let mut entries = self.entries();
        let unknown = || ApiError::NotFound(format!("no staged upload {dist_id:?}"));
        let pending = entries.get(dist_id).ok_or_else(unknown)?;
        let reserved = &pending.reservation;
        if reserved.subdir != subdir || reserved.file_name != file_name {
            return Err(ApiError::BadRequest(format!(
                "staged upload {dist_id:?} is for {}/{}, not {subdir}/{file_name}",
                reserved.subdir, reserved.file_name
            )));
        }
        if pending.staged.is_none() {
            return Err(ApiError::BadRequest(format!(
                "nothing was uploaded for staged upload {dist_id:?}"
            )));
        }
        match entries.remove(dist_id) {
            Some(Pending {
                reservation,
                staged: Some(staged),
                ..
            }) => Ok((reservation, staged)),
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation() -> Reservation {
        Reservation {
            subdir: "noarch".into(),
            file_name: "a-1-0.conda".into(),
            sha256: None,
        }
    }

    #[test]
    fn only_the_ticket_admits_and_only_a_received_file_commits() {
        let pending = PendingUploads::new("https");
        let ticket = pending.reserve(reservation()).unwrap();
        assert!(matches!(
            pending.admit(&ticket.dist_id, "wrong"),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            pending.admit("unknown", ticket.secret.expose()),
            Err(ApiError::Unauthorized)
        ));
        assert_eq!(
            pending
                .admit(&ticket.dist_id, ticket.secret.expose())
                .unwrap(),
            reservation()
        );
        assert!(matches!(
            pending.take(&ticket.dist_id, "noarch", "a-1-0.conda"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn reservations_are_bounded() {
        let pending = PendingUploads::new("https");
        for _ in 0..MAX_PENDING {
            pending.reserve(reservation()).unwrap();
        }
        assert!(matches!(
            pending.reserve(reservation()),
            Err(ApiError::Busy)
        ));
    }
}
