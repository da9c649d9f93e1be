//! Time values of an export spec (SPEC §4): an ISO date (`2026-01-01`, midnight
//! UTC), an RFC 3339 date-time with a zone, or a relative time (`now`,
//! `<n><unit>`, `now-<n><unit>`; unit `s m h d w`) resolved once against the
//! export's `as_of`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// A parsed time value, before resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExpr {
    /// A fixed instant.
    Absolute(DateTime<Utc>),
    /// That long before `as_of` (zero for `now`).
    BeforeAsOf(Duration),
}

impl TimeExpr {
    /// Parses a spec time value.
    ///
    /// ```
    /// use nusomi_export::spec::TimeExpr;
    /// assert!(TimeExpr::parse("2026-01-01").is_ok());
    /// assert!(TimeExpr::parse("now-7d").is_ok());
    /// assert!(TimeExpr::parse("2026-01-01T00:00:00").unwrap_err().contains("zone"));
    /// ```
    pub fn parse(s: &str) -> Result<TimeExpr, String> {
        let s = s.trim();
        if s == "now" {
            return Ok(TimeExpr::BeforeAsOf(Duration::zero()));
        }
        if let Some(rel) = relative(s.strip_prefix("now-").unwrap_or(s)) {
            return rel.map(TimeExpr::BeforeAsOf);
        }
        if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            if s.len() == 10 {
                let midnight = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
                return midnight
                    .map(TimeExpr::Absolute)
                    .ok_or_else(|| format!("{s:?} is not a valid date"));
            }
        }
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Ok(TimeExpr::Absolute(t.with_timezone(&Utc))),
            Err(_) if looks_zoneless(s) => Err(format!(
                "{s:?} has no time zone; write it with `Z` or an offset (e.g. {s}Z)"
            )),
            Err(_) => Err(format!(
                "{s:?} is not a time: use an ISO date (2026-01-01), an RFC 3339 date-time \
                 (2026-01-01T00:00:00Z), or a relative time (now, 7d, 24h, now-30m; units s m h d w)"
            )),
        }
    }

    /// The instant this value names for an export created at `as_of`.
    pub fn resolve(self, as_of: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeExpr::Absolute(t) => t,
            TimeExpr::BeforeAsOf(d) => as_of - d,
        }
    }
}

/// `<n><unit>`: `None` if `s` does not have that shape at all, an error if it
/// does but the number or unit is bad.
fn relative(s: &str) -> Option<Result<Duration, String>> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    if split == 0 {
        return None;
    }
    let (num, unit) = s.split_at(split);
    if unit.len() != 1 || !unit.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let n: i64 = match num.parse() {
        Ok(n) => n,
        Err(_) => return Some(Err(format!("{s:?}: {num} is too large"))),
    };
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        other => {
            return Some(Err(format!(
                "{s:?}: unknown unit {other:?} (use s, m, h, d or w, lower case)"
            )))
        }
    };
    Some(d.ok_or_else(|| format!("{s:?} is too long a time")))
}

fn looks_zoneless(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
}

/// RFC 3339 with `Z` and only the fractional digits needed, as the manifest
/// and the compiled SQL write instants.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn grammar() {
        let as_of = at("2026-06-10T12:00:00Z");
        let r = |s: &str| TimeExpr::parse(s).unwrap().resolve(as_of);
        assert_eq!(r("2026-01-01"), at("2026-01-01T00:00:00Z"));
        assert_eq!(r("2026-01-01T05:00:00+02:00"), at("2026-01-01T03:00:00Z"));
        assert_eq!(r("now"), as_of);
        assert_eq!(r("7d"), at("2026-06-03T12:00:00Z"));
        assert_eq!(r("now-24h"), at("2026-06-09T12:00:00Z"));
        assert_eq!(r("30m"), at("2026-06-10T11:30:00Z"));
        assert_eq!(r("90s"), at("2026-06-10T11:58:30Z"));
        assert_eq!(r("2w"), at("2026-05-27T12:00:00Z"));
    }

    #[test]
    fn errors() {
        assert!(TimeExpr::parse("7D").unwrap_err().contains("unknown unit"));
        assert!(TimeExpr::parse("2026-01-01T00:00:00")
            .unwrap_err()
            .contains("no time zone"));
        assert!(TimeExpr::parse("yesterday")
            .unwrap_err()
            .contains("is not a time"));
        assert!(TimeExpr::parse("2026-02-30").is_err());
        assert!(TimeExpr::parse("99999999999999999999d")
            .unwrap_err()
            .contains("too large"));
    }
}
