//! Semantic versions (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`) parsed and compared without a heap.

use core::cmp::Ordering;

/// A parsed semantic version borrowing its pre-release text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version<'a> {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release identifiers (without the `-`), empty if none.
    pub pre: &'a str,
}

/// A version string that is not `MAJOR.MINOR.PATCH[-PRE][+BUILD]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a semantic version (expected MAJOR.MINOR.PATCH, e.g. 1.4.2)")]
pub struct BadVersion;

fn num(s: &str) -> Result<u64, BadVersion> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(BadVersion);
    }
    s.parse().map_err(|_| BadVersion)
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl<'a> Version<'a> {
    /// Parse `s`.
    pub fn parse(s: &'a str) -> Result<Self, BadVersion> {
        let (core_pre, build) = match s.split_once('+') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build {
            if !ident_ok(b) {
                return Err(BadVersion);
            }
        }
        let (core, pre) = match core_pre.split_once('-') {
            Some((a, p)) => {
                if !ident_ok(p) {
                    return Err(BadVersion);
                }
                (a, p)
            }
            None => (core_pre, ""),
        };
        let mut it = core.split('.');
        let major = num(it.next().ok_or(BadVersion)?)?;
        let minor = num(it.next().ok_or(BadVersion)?)?;
        let patch = num(it.next().ok_or(BadVersion)?)?;
        if it.next().is_some() {
            return Err(BadVersion);
        }
        Ok(Self {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let mut ia = a.split('.');
    let mut ib = b.split('.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let nx = x.bytes().all(|c| c.is_ascii_digit());
                let ny = y.bytes().all(|c| c.is_ascii_digit());
                let o = match (nx, ny) {
                    (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.major
            .cmp(&other.major)
            .then(self.minor.cmp(&other.minor))
            .then(self.patch.cmp(&other.patch))
            .then_with(|| cmp_pre(self.pre, other.pre))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_like_semver() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ];
        for w in order.windows(2) {
            let a = Version::parse(w[0]).unwrap();
            let b = Version::parse(w[1]).unwrap();
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(
            Version::parse("1.2.3+build.5").unwrap(),
            Version::parse("1.2.3").unwrap()
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3-a..b",
            "v1.2.3",
        ] {
            assert_eq!(Version::parse(s), Err(BadVersion), "{s}");
        }
    }
}
