//! Shell-style globs (`*`, `?`, `[...]`) for `--interfaces.include` and `--interfaces.exclude`.
//!
//! A pattern is checked once, when the flag is parsed, and then matched against whole interface
//! names as bytes, since a name need not be UTF-8.
//!
//! Invariant: matching never panics and takes time bounded by pattern length times name length.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyOne,
    AnyRun,
    /// A bracket expression: inclusive byte ranges, negated with a leading `!` or `^`.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum GlobError {
    UnclosedBracket,
    TrailingBackslash,
    Empty,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::UnclosedBracket => f.write_str("unclosed '['"),
            GlobError::TrailingBackslash => f.write_str("trailing '\\'"),
            GlobError::Empty => f.write_str("empty pattern"),
        }
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            match b {
                b'*' => {
                    // Consecutive stars mean the same as one and would only cost time.
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                b'?' => tokens.push(Token::AnyOne),
                b'\\' => {
                    let &escaped = bytes.get(i).ok_or(GlobError::TrailingBackslash)?;
                    tokens.push(Token::Byte(escaped));
                    i += 1;
                }
                b'[' => {
                    let (token, next) = parse_class(bytes, i)?;
                    tokens.push(token);
                    i = next;
                }
                b => tokens.push(Token::Byte(b)),
            }
        }
        Ok(Glob { tokens })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &[u8]) -> bool {
        // The classic two-pointer walk with one backtrack point, which is linear for patterns
        // whose only wildcard is `*` and never exponential.
        let (mut p, mut n) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    backtrack = Some((p, n));
                    p += 1;
                    continue;
                }
                Some(token) if token_matches(token, name[n]) => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((bp, bn)) => {
                    backtrack = Some((bp, bn + 1));
                    p = bp + 1;
                    n = bn + 1;
                }
                None => return false,
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
    }
}

fn token_matches(token: &Token, b: u8) -> bool {
    match token {
        Token::Byte(x) => *x == b,
        Token::AnyOne => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
        }
    }
}

/// Parses a bracket expression whose `[` ended just before `start`.
fn parse_class(bytes: &[u8], start: usize) -> Result<(Token, usize), GlobError> {
    let mut i = start;
    let negated = matches!(bytes.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let &b = bytes.get(i).ok_or(GlobError::UnclosedBracket)?;
        // A `]` right after the opening bracket is a member, as in the shell.
        if b == b']' && !first {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = b;
        i += 1;
        if bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(|&c| c != b']') {
            let hi = bytes[i + 1];
            ranges.push((lo.min(hi), lo.max(hi)));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, name: &str, expected: bool) {
        let glob = Glob::new(pattern).expect("valid pattern");
        assert_eq!(
            glob.matches(name.as_bytes()),
            expected,
            "{pattern} vs {name}"
        );
    }

    #[test]
    fn matches_whole_names() {
        check("veth*", "veth1f58e81", true);
        check("veth*", "xveth1", false);
        check("eth0", "eth0", true);
        check("eth0", "eth01", false);
        check("eth?", "eth1", true);
        check("eth?", "eth10", false);
        check("*", "", true);
        check("*0", "docker0", true);
        check("*a*b*", "xxaxxbxx", true);
        check("*a*b", "xxaxxbxxc", false);
        check("eth[0-2]", "eth2", true);
        check("eth[0-2]", "eth3", false);
        check("eth[!0-2]", "eth3", true);
        check("eth[^0-2]", "eth1", false);
        check("[]a]x", "]x", true);
        check("a[-]b", "a-b", true);
        check("br\\*", "br*", true);
        check("br\\*", "br0", false);
        check("***", "anything", true);
    }

    #[test]
    fn non_utf8_names_are_matched_as_bytes() -> Result<(), GlobError> {
        assert!(Glob::new("e*")?.matches(b"e\xff\xfe"));
        assert!(Glob::new("e??")?.matches(b"e\xff\xfe"));
        Ok(())
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::new("eth[0"), Err(GlobError::UnclosedBracket));
        assert_eq!(Glob::new("eth\\"), Err(GlobError::TrailingBackslash));
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("[!"), Err(GlobError::UnclosedBracket));
    }

    #[test]
    fn many_stars_stay_fast() -> Result<(), GlobError> {
        let glob = Glob::new(&"*a".repeat(30))?;
        let name = "a".repeat(29) + "b";
        assert!(!glob.matches(name.as_bytes()));
        Ok(())
    }
}
