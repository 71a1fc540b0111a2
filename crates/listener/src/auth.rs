//! Bearer tokens with three scopes. Tokens come from a file or an environment variable (never the
//! YAML), one per line as `<scope> <token>`; only their SHA-256 is kept. `checkin` may only report a
//! member in, `read` may look, `admin` may also change. Anonymous reads are possible only when the operator opts in, and only from
//! loopback.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

/// The least length of a token: guessing must be hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// Ordered: a scope may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A member reporting in (`POST …/check-in`), nothing else: the token a VM image carries.
    CheckIn,
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CheckIn => "checkin",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// The accepted tokens, hashed.
#[derive(Clone, Default)]
pub struct Tokens {
    hashed: Vec<([u8; 32], Scope)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} hashed)", self.hashed.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses `<scope> <token>` lines (`#` comments and blank lines skipped). Errors name the line,
    /// never the token.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut hashed = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let Some((scope, token)) = line.split_once(char::is_whitespace) else {
                return Err(format!("line {n}: expected `<scope> <token>` (scope `read` or `admin`)"));
            };
            let scope = match scope {
                "checkin" => Scope::CheckIn,
                "read" => Scope::Read,
                "admin" => Scope::Admin,
                other => return Err(format!("line {n}: unknown scope `{other}` (`read`, `admin` or `checkin`)")),
            };
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
                return Err(format!(
                    "line {n}: a token is one word of at least {MIN_TOKEN_LEN} characters (this one is not)"
                ));
            }
            hashed.push((digest(token), scope));
        }
        if hashed.is_empty() {
            return Err("no token: give at least one `admin <token>` line".into());
        }
        Ok(Tokens { hashed })
    }

    /// The scope of a presented token. Every stored hash is compared in full, whatever matches,
    /// so the time taken says nothing about the tokens.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let d = digest(presented);
        let mut found = None;
        for (h, scope) in &self.hashed {
            let diff = h.iter().zip(d.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = found.max(Some(*scope));
            }
        }
        found
    }

    /// How many tokens (their values are never exposed).
    pub fn len(&self) -> usize {
        self.hashed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashed.is_empty()
    }
}

/// Who is asking, and why not, if not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No usable credentials: 401.
    Unauthenticated(&'static str),
    /// Authenticated, not allowed: 403.
    Forbidden(&'static str),
}

/// The scope of a request: its bearer token's, or `read` for an anonymous read the operator
/// allowed from loopback.
pub fn authorize(
    tokens: &Tokens,
    anonymous_read: bool,
    authorization: Option<&str>,
    peer: SocketAddr,
    needs: Scope,
) -> Result<Scope, Refusal> {
    let scope = match authorization {
        Some(value) => {
            let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
                return Err(Refusal::Unauthenticated("use `Authorization: Bearer <token>`"));
            };
            tokens.scope_of(token).ok_or(Refusal::Unauthenticated("unknown token"))?
        }
        // Anonymous: reads only (a check-in changes a member's health, so it needs a token).
        None if anonymous_read && peer.ip().is_loopback() && needs == Scope::Read => Scope::Read,
        None if anonymous_read && peer.ip().is_loopback() && needs == Scope::Admin => {
            return Err(Refusal::Forbidden("this needs a token with the `admin` scope"))
        }
        None => return Err(Refusal::Unauthenticated("a bearer token is needed")),
    };
    if scope < needs {
        return Err(Refusal::Forbidden(match needs {
            Scope::Admin => "this needs a token with the `admin` scope",
            _ => "this needs a token with the `read` scope (a `checkin` token may only check in)",
        }));
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-0123456789abcdef";
    const READ: &str = "read-0123456789abcdefgh";
    const CHECKIN: &str = "checkin-0123456789abcdef";

    fn tokens() -> Tokens {
        Tokens::parse(&format!("# ours\nadmin {ADMIN}\n\nread  {READ}\n")).unwrap()
    }

    #[test]
    fn scopes_by_token_and_nothing_for_a_stranger() {
        let t = tokens();
        assert_eq!(t.scope_of(ADMIN), Some(Scope::Admin));
        assert_eq!(t.scope_of(READ), Some(Scope::Read));
        assert_eq!(t.scope_of("admin-0123456789abcdeF"), None);
        assert_eq!(format!("{t:?}"), "Tokens(2 hashed)", "never the tokens themselves");
    }

    #[test]
    fn bad_lines_are_named_without_the_token() {
        let e = Tokens::parse("admin short").unwrap_err();
        assert!(e.starts_with("line 1: a token is one word of at least 16"), "{e}");
        assert!(!e.contains("short"));
        assert!(Tokens::parse("root 0123456789abcdefgh").unwrap_err().contains("unknown scope `root`"));
        assert!(Tokens::parse("justoneword").unwrap_err().contains("line 1"));
        assert!(Tokens::parse("# nothing\n").unwrap_err().contains("no token"));
    }

    #[test]
    fn who_may_do_what() {
        let t = tokens();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let bearer = |tok: &str| format!("Bearer {tok}");
        assert_eq!(authorize(&t, false, Some(&bearer(ADMIN)), far, Scope::Admin), Ok(Scope::Admin));
        assert_eq!(authorize(&t, false, Some(&bearer(READ)), far, Scope::Read), Ok(Scope::Read));
        assert!(matches!(authorize(&t, false, Some(&bearer(READ)), far, Scope::Admin), Err(Refusal::Forbidden(_))));
        assert!(matches!(authorize(&t, false, None, lo, Scope::Read), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(authorize(&t, false, Some("Basic eA=="), lo, Scope::Read), Err(Refusal::Unauthenticated(_))));
        // Anonymous reads: only when allowed, only from loopback, never a change.
        assert_eq!(authorize(&t, true, None, lo, Scope::Read), Ok(Scope::Read));
        assert!(matches!(authorize(&t, true, None, far, Scope::Read), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(authorize(&t, true, None, lo, Scope::Admin), Err(Refusal::Forbidden(_))));
        assert!(matches!(authorize(&t, true, None, lo, Scope::CheckIn), Err(Refusal::Unauthenticated(_))));
        // A check-in token checks in, and does nothing else.
        let t = Tokens::parse(&format!("admin {ADMIN}\ncheckin {CHECKIN}\n")).unwrap();
        assert_eq!(authorize(&t, false, Some(&bearer(CHECKIN)), far, Scope::CheckIn), Ok(Scope::CheckIn));
        assert!(
            matches!(authorize(&t, false, Some(&bearer(CHECKIN)), far, Scope::Read), Err(Refusal::Forbidden(m)) if m.contains("checkin"))
        );
        assert_eq!(authorize(&t, false, Some(&bearer(ADMIN)), far, Scope::CheckIn), Ok(Scope::Admin));
    }
}
