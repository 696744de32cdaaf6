//! Step 3a (pure): is a freshly minted token that the signing credentials' expiry cut short
//! worth a Secrets Manager write?
//!
//! A caching credential source (the EKS Pod Identity agent) hands out the same credentials until
//! shortly before they expire. Near the end of that window every new token is clamped to their
//! expiry, lives less than `renewBefore`, and is due again at once: without this check each
//! reconcile would write Secrets Manager, again and again, until the source refreshes. Asking the
//! source again is cheap (a local call, no write), so the published token is kept while it is
//! valid, the source is asked again every [`CREDENTIALS_POLL`], and Secrets Manager is written
//! once: when renewed credentials come, or as late as still safe when a write gains something.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// How often the credential source is asked again while a clamped token is held back.
pub const CREDENTIALS_POLL: SignedDuration = SignedDuration::from_secs(15);

/// How long before the published token expires a held-back token is written anyway, so the
/// write and the projections land before clients see an expired token.
pub const LAST_SAFE_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// The times of a freshly minted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    /// Signing time.
    pub issued_at: Timestamp,
    /// Expiry (the credentials' expiry when `clamped`).
    pub expires_at: Timestamp,
    /// Whether the signing credentials' expiry cut its lifetime short.
    pub clamped: bool,
}

/// A fresh token held back: nothing is written, the published token stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Until when the published token is valid.
    pub published_until: Timestamp,
    /// When the credentials that signed the fresh token expire.
    pub credentials_expire: Timestamp,
    /// When a token signed by these credentials is written anyway, if renewed ones do not come;
    /// `None` when such a token would not outlive the published one (writing it gains nothing).
    pub write_at: Option<Timestamp>,
    /// When to ask the credential source again.
    pub wake: Timestamp,
}

impl Hold {
    /// The `Degraded` message: stable through one credential window, so holding writes status
    /// once, not on every poll.
    pub fn message(&self) -> String {
        let mut message = format!(
            "the operator's AWS credentials expire at {}, which cuts new tokens short; \
             keeping the published token, valid until {}, and asking for renewed credentials every {}s instead of writing Secrets Manager",
            fmt_time(self.credentials_expire),
            fmt_time(self.published_until),
            CREDENTIALS_POLL.as_secs(),
        );
        if let Some(write_at) = self.write_at {
            message.push_str(&format!("; if none come, rotating at {}", fmt_time(write_at)));
        }
        message
    }
}

fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What to do with a freshly minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clamp {
    /// Write it to Secrets Manager.
    Write,
    /// Keep the published token and ask the credential source again.
    Hold(Hold),
}

/// Decides whether `fresh` is written, given the published token's expiry (`None`: nothing is
/// published) and `renewBefore`.
///
/// An unclamped token is always written. A clamped one, while a valid token is published, is
/// held back when it would not outlive the published one (a token from the very credentials
/// that signed the published one expires with it: writing it gains nothing and, being due again
/// at once, would be the loop), and when it lives less than `renewBefore` (it would be due again
/// at once); the latter is written [`LAST_SAFE_MARGIN`] before the published token expires.
pub fn decide(fresh: &Fresh, renew_before: Duration, published_until: Option<Timestamp>, now: Timestamp) -> Clamp {
    if !fresh.clamped {
        return Clamp::Write;
    }
    let published_until = match published_until {
        Some(until) if until > now => until,
        // Nothing valid is published: anything alive is better.
        _ if fresh.expires_at > now => return Clamp::Write,
        // Already expired at birth (credentials at their very end): only renewed ones help.
        _ => now,
    };
    let life = fresh.expires_at.duration_since(fresh.issued_at);
    let renew_before = SignedDuration::try_from(renew_before).unwrap_or(SignedDuration::MAX);
    let gains = fresh.expires_at > published_until;
    if gains && life >= renew_before {
        return Clamp::Write;
    }
    let poll = now.saturating_add(CREDENTIALS_POLL).unwrap_or(now);
    let write_at = gains.then(|| {
        published_until
            .saturating_sub(LAST_SAFE_MARGIN)
            .unwrap_or(published_until)
    });
    match write_at {
        Some(at) if at <= now => Clamp::Write,
        _ => Clamp::Hold(Hold {
            published_until,
            credentials_expire: fresh.expires_at,
            write_at,
            wake: write_at.map_or(poll, |at| at.min(poll)),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const RENEW_BEFORE: Duration = Duration::from_secs(300);

    fn fresh(issued: &str, expires: &str, clamped: bool) -> Fresh {
        Fresh {
            issued_at: t(issued),
            expires_at: t(expires),
            clamped,
        }
    }

    #[test]
    fn an_unclamped_or_long_enough_token_is_written() {
        let published = Some(t("2026-11-29T12:25:00Z"));
        let now = t("2026-11-29T12:20:00Z");
        let full = fresh("2026-11-29T12:20:00Z", "2026-11-29T12:35:00Z", false);
        assert_eq!(decide(&full, RENEW_BEFORE, published, now), Clamp::Write);
        let clamped_but_long = fresh("2026-11-29T12:20:00Z", "2026-11-29T12:25:30Z", true);
        assert_eq!(decide(&clamped_but_long, RENEW_BEFORE, published, now), Clamp::Write);
        let clamped_not_later = fresh("2026-11-29T12:20:00Z", "2026-11-29T12:25:00Z", true);
        assert!(
            matches!(
                decide(&clamped_not_later, RENEW_BEFORE, published, now),
                Clamp::Hold(Hold { write_at: None, .. })
            ),
            "a clamped token no later than the published one gains nothing, however long it lives"
        );
    }

    #[test]
    fn a_clamped_token_from_the_same_credentials_is_never_written_while_one_is_published() {
        // The published token was signed by the same credentials: same expiry.
        let published = t("2026-11-29T12:25:00Z");
        for now in ["2026-11-29T12:20:30Z", "2026-11-29T12:24:30Z", "2026-11-29T12:24:59Z"] {
            let now = t(now);
            let minted = fresh(&now.to_string(), "2026-11-29T12:25:00Z", true);
            assert_eq!(
                decide(&minted, RENEW_BEFORE, Some(published), now),
                Clamp::Hold(Hold {
                    published_until: published,
                    credentials_expire: published,
                    write_at: None,
                    wake: now + CREDENTIALS_POLL,
                })
            );
        }
    }

    #[test]
    fn a_clamped_token_that_outlives_the_published_one_is_written_as_late_as_safe() {
        // renewBefore 10m: a token minted at 12:20 by credentials expiring 12:27 lives 7m.
        let renew_before = Duration::from_secs(600);
        let published = Some(t("2026-11-29T12:25:00Z"));
        let minted = |now: &str| fresh(now, "2026-11-29T12:27:00Z", true);
        let early = decide(
            &minted("2026-11-29T12:20:00Z"),
            renew_before,
            published,
            t("2026-11-29T12:20:00Z"),
        );
        assert_eq!(
            early,
            Clamp::Hold(Hold {
                published_until: t("2026-11-29T12:25:00Z"),
                credentials_expire: t("2026-11-29T12:27:00Z"),
                write_at: Some(t("2026-11-29T12:24:00Z")),
                wake: t("2026-11-29T12:20:15Z"),
            })
        );
        let Clamp::Hold(close) = decide(
            &minted("2026-11-29T12:23:50Z"),
            renew_before,
            published,
            t("2026-11-29T12:23:50Z"),
        ) else {
            panic!("held");
        };
        assert_eq!(
            close.wake,
            t("2026-11-29T12:24:00Z"),
            "wakes at the last safe time, not after it"
        );
        assert_eq!(
            decide(
                &minted("2026-11-29T12:24:00Z"),
                renew_before,
                published,
                t("2026-11-29T12:24:00Z")
            ),
            Clamp::Write
        );
    }

    #[test]
    fn with_nothing_valid_published_a_clamped_token_is_written_if_it_is_still_alive() {
        let minted = fresh("2026-11-29T12:20:00Z", "2026-11-29T12:22:00Z", true);
        let now = t("2026-11-29T12:20:00Z");
        assert_eq!(decide(&minted, RENEW_BEFORE, None, now), Clamp::Write);
        assert_eq!(
            decide(&minted, RENEW_BEFORE, Some(t("2026-11-29T12:19:00Z")), now),
            Clamp::Write
        );
        let dead = fresh("2026-11-29T12:20:00Z", "2026-11-29T12:20:00Z", true);
        assert!(matches!(
            decide(&dead, RENEW_BEFORE, Some(t("2026-11-29T12:19:00Z")), now),
            Clamp::Hold(Hold { write_at: None, .. })
        ));
    }

    #[test]
    fn the_message_says_until_when_the_token_is_valid_and_when_the_credentials_expire() {
        let hold = Hold {
            published_until: t("2026-11-29T12:25:00Z"),
            credentials_expire: t("2026-11-29T12:27:00Z"),
            write_at: Some(t("2026-11-29T12:24:00Z")),
            wake: t("2026-11-29T12:20:15Z"),
        };
        let message = hold.message();
        assert!(message.contains("expire at 2026-11-29T12:27:00Z"), "{message}");
        assert!(message.contains("valid until 2026-11-29T12:25:00Z"), "{message}");
        assert!(message.contains("rotating at 2026-11-29T12:24:00Z"), "{message}");
        assert!(message.contains("every 15s"), "{message}");
    }
}
