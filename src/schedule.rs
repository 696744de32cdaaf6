//! Rotation schedules, renewal times, jitter and failure backoff.
//!
//! Everything in this module is pure: callers pass in the current time, the
//! recorded token lifetime and any randomness, so every decision the
//! reconciler makes about *when* to rotate can be unit tested and is
//! reproducible after a restart.
//!
//! Schedules use the AWS Secrets Manager / EventBridge expression syntax
//! (`rate(12 hours)`, `cron(0 8 1 * ? *)`), evaluated in UTC, so users can
//! copy expressions they already use with Secrets Manager rotation.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::civil;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Shortest allowed time between two writes of the same secret.
///
/// AWS asks callers to write a secret with `PutSecretValue` no more than once
/// every 10 minutes; schedules that would rotate more often are rejected.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Longest accepted schedule expression, the limit Secrets Manager applies to
/// `ScheduleExpression`.
pub const MAX_EXPRESSION_LEN: usize = 256;

/// Longest accepted `rate(...)`, matching the 1000-day ceiling Secrets
/// Manager puts on rotation intervals.
pub const MAX_RATE: Duration = Duration::from_secs(1000 * 86_400);

/// Base of the failure backoff: the longest wait after the first failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

/// Ceiling of the failure backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);

/// Shortest wait between retries, so a caller never spins on a zero delay.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(1);

/// How long before a token's expiry the last retry must happen, leaving time
/// for the write to reach Secrets Manager and for clients to pick it up.
pub const EXPIRY_RETRY_MARGIN: Duration = Duration::from_secs(30);

/// Upper bound of the renewal jitter, however long the renewal window is.
pub const MAX_JITTER: Duration = Duration::from_secs(2 * 60);

/// First year a cron expression may name (AWS range).
const FIRST_YEAR: i16 = 1970;

/// Last year a cron expression may name (AWS range).
const LAST_YEAR: i16 = 2199;

/// How much of a rejected expression is echoed back in error messages; the
/// message ends up in a Kubernetes status condition, which must stay small.
const ECHO_LIMIT: usize = 80;

const USAGE: &str = "expected 'rate(<value> <unit>)' or \
     'cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)', \
     e.g. 'rate(12 hours)' or 'cron(0 */6 * * ? *)'";

/// Why a schedule expression was rejected. The messages are written for the
/// user who wrote the expression and say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not follow the AWS schedule syntax.
    #[error("invalid schedule \"{expression}\": {reason}")]
    Invalid {
        /// The offending expression, shortened if it was very long.
        expression: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The schedule would write the secret more often than AWS allows.
    #[error(
        "invalid schedule \"{expression}\": it can fire {} apart, but a secret may be written \
         at most once every {}; choose a schedule whose firings are at least {} apart",
        format_duration(*interval),
        format_duration(*minimum),
        format_duration(*minimum)
    )]
    TooFrequent {
        /// The offending expression.
        expression: String,
        /// The shortest gap between two firings.
        interval: Duration,
        /// The shortest gap that is allowed.
        minimum: Duration,
    },
    /// The cron expression has no firing left (its year range is over or it
    /// names a date that does not exist).
    #[error(
        "invalid schedule \"{expression}\": it never fires after {after}; check the year \
         field (use '*' for every year) and that the day exists in the chosen months"
    )]
    NeverFires {
        /// The offending expression.
        expression: String,
        /// The time after which no firing was found.
        after: Timestamp,
    },
}

impl ScheduleError {
    fn invalid(expression: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            expression: echo(expression),
            reason: reason.into(),
        }
    }
}

/// Shortens `s` for an error message without splitting a character.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_LIMIT) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// When a secret is rotated, as written in the AWS schedule expression syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationSchedule {
    /// `rate(N unit)`: rotate this long after the previous rotation.
    ///
    /// Parsing only produces whole minutes; `Display` shows other values
    /// rounded down to the minute.
    Rate(Duration),
    /// `cron(...)`: rotate at fixed wall-clock times, in UTC.
    Cron(CronSchedule),
}

impl RotationSchedule {
    /// The first firing strictly after `t`, or `None` if the schedule never
    /// fires again.
    ///
    /// A rate counts from `t`, which callers set to the last rotation: like
    /// Secrets Manager, `rate(12 hours)` means "12 hours after the previous
    /// rotation", not "at fixed 12-hour marks".
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Rate(rate) => add(t, *rate).filter(|next| *next > t),
            Self::Cron(cron) => cron.next_after(t),
        }
    }

    /// The shortest gap between two consecutive firings after `from`, or
    /// `None` if the schedule fires fewer than twice after `from`.
    pub fn shortest_interval(&self, from: Timestamp) -> Option<Duration> {
        match self {
            Self::Rate(rate) => Some(*rate),
            Self::Cron(cron) => cron.shortest_interval(from),
        }
    }

    /// Checks that the schedule can be used from `from` on: it must fire at
    /// least once more and never twice within [`MIN_WRITE_INTERVAL`].
    pub fn validate(&self, from: Timestamp) -> Result<(), ScheduleError> {
        if self.next_after(from).is_none() {
            return Err(ScheduleError::NeverFires {
                expression: self.to_string(),
                after: from,
            });
        }
        match self.shortest_interval(from) {
            Some(interval) if interval < MIN_WRITE_INTERVAL => Err(ScheduleError::TooFrequent {
                expression: self.to_string(),
                interval,
                minimum: MIN_WRITE_INTERVAL,
            }),
            _ => Ok(()),
        }
    }
}

impl FromStr for RotationSchedule {
    type Err = ScheduleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Checked before anything else so hostile input costs nothing.
        let length = input.chars().count();
        if length > MAX_EXPRESSION_LEN {
            return Err(ScheduleError::invalid(
                input,
                format!(
                    "it is {length} characters long; schedule expressions are at most \
                     {MAX_EXPRESSION_LEN} characters"
                ),
            ));
        }
        let trimmed = input.trim();
        let (kind, body) = match trimmed.find('(') {
            Some(open) => (&trimmed[..open], &trimmed[open + 1..]),
            None => return Err(ScheduleError::invalid(input, USAGE)),
        };
        let kind = kind.trim_end();
        if kind != "rate" && kind != "cron" {
            let hint = if kind.eq_ignore_ascii_case("rate") || kind.eq_ignore_ascii_case("cron") {
                format!("write '{}' in lower case; {USAGE}", kind.to_ascii_lowercase())
            } else {
                USAGE.to_owned()
            };
            return Err(ScheduleError::invalid(input, hint));
        }
        let Some(body) = body.strip_suffix(')') else {
            return Err(ScheduleError::invalid(input, format!("missing closing ')'; {USAGE}")));
        };
        if body.contains(['(', ')']) {
            return Err(ScheduleError::invalid(
                input,
                format!("unexpected parenthesis inside '{kind}(...)'; {USAGE}"),
            ));
        }
        if kind == "rate" {
            parse_rate(input, body).map(Self::Rate)
        } else {
            CronSchedule::parse_fields(input, body).map(Self::Cron)
        }
    }
}

impl fmt::Display for RotationSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate(rate) => {
                let secs = rate.as_secs();
                let (value, unit) = if secs.is_multiple_of(86_400) {
                    (secs / 86_400, "day")
                } else if secs.is_multiple_of(3_600) {
                    (secs / 3_600, "hour")
                } else {
                    (secs / 60, "minute")
                };
                let plural = if value == 1 { "" } else { "s" };
                write!(f, "rate({value} {unit}{plural})")
            }
            Self::Cron(cron) => cron.fmt(f),
        }
    }
}

fn parse_rate(input: &str, body: &str) -> Result<Duration, ScheduleError> {
    let tokens: Vec<&str> = body.split_whitespace().collect();
    let [value, unit] = tokens.as_slice() else {
        return Err(ScheduleError::invalid(
            input,
            "expected 'rate(<value> <unit>)' with a whole number and a unit of \
             minute(s), hour(s) or day(s), e.g. 'rate(12 hours)'",
        ));
    };
    // Digits only: `str::parse` would also accept a leading '+'.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::invalid(
            input,
            format!(
                "the rate value '{}' must be a positive whole number, e.g. 'rate(12 hours)'",
                echo(value)
            ),
        ));
    }
    let singular = unit.strip_suffix('s').unwrap_or(unit);
    let unit_secs = match singular {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => {
            return Err(ScheduleError::invalid(
                input,
                format!(
                    "unknown rate unit '{}'; use minute(s), hour(s) or day(s), \
                     e.g. 'rate(7 days)'",
                    echo(unit)
                ),
            ));
        }
    };
    let max_value = MAX_RATE.as_secs() / unit_secs;
    let Some(number) = value.parse::<u64>().ok().filter(|n| *n <= max_value) else {
        return Err(ScheduleError::invalid(
            input,
            format!("the rate may be at most 1000 days; use at most 'rate({max_value} {singular}s)'"),
        ));
    };
    if number == 0 {
        return Err(ScheduleError::invalid(
            input,
            format!("the rate value must be at least 1, e.g. 'rate(1 {singular})'"),
        ));
    }
    // AWS rejects 'rate(1 hours)' and 'rate(2 hour)', so we do too: an
    // expression accepted here must also be accepted by Secrets Manager.
    let wants_plural = number != 1;
    if wants_plural != unit.ends_with('s') {
        let suffix = if wants_plural { "s" } else { "" };
        return Err(ScheduleError::invalid(
            input,
            format!(
                "use 'rate({number} {singular}{suffix})': the unit is singular for 1 and \
                 plural otherwise"
            ),
        ));
    }
    Ok(Duration::from_secs(number * unit_secs))
}

/// A parsed `cron(...)` expression, evaluated in UTC.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The six fields as written, upper-cased, for display.
    fields: Vec<String>,
    /// The croner pattern the fields were translated into; boxed because it
    /// is large and would bloat every `RotationSchedule::Rate`.
    cron: Box<Cron>,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for CronSchedule {}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron({})", self.fields.join(" "))
    }
}

/// The six fields of an AWS cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Minutes,
    Hours,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

const FIELDS: [Field; 6] = [
    Field::Minutes,
    Field::Hours,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
    Field::Year,
];

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Quartz/AWS order: 1 is Sunday.
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Minutes => "minutes",
            Self::Hours => "hours",
            Self::DayOfMonth => "day-of-month",
            Self::Month => "month",
            Self::DayOfWeek => "day-of-week",
            Self::Year => "year",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            Self::Minutes => (0, 59),
            Self::Hours => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (1, 7),
            Self::Year => (
                u32::from(FIRST_YEAR.unsigned_abs()),
                u32::from(LAST_YEAR.unsigned_abs()),
            ),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Month => &MONTH_NAMES,
            Self::DayOfWeek => &WEEKDAY_NAMES,
            _ => &[],
        }
    }

    /// What the field accepts, for error messages.
    fn syntax(self) -> &'static str {
        match self {
            Self::Minutes => "0-59 with , - * /",
            Self::Hours => "0-23 with , - * /",
            Self::DayOfMonth => "1-31 with , - * / ? L W",
            Self::Month => "1-12 or JAN-DEC with , - * /",
            Self::DayOfWeek => "1-7 or SUN-SAT (1 = SUN) with , - * ? L #",
            Self::Year => "1970-2199 with , - * /",
        }
    }

    fn allows_step(self) -> bool {
        self != Self::DayOfWeek
    }

    /// Parses one value (number or name) and checks its range.
    fn value(self, token: &str) -> Result<u32, String> {
        let (lo, hi) = self.range();
        if let Some(index) = self.names().iter().position(|name| name.eq_ignore_ascii_case(token)) {
            // Names count from the start of the range (JAN = 1, SUN = 1).
            return u32::try_from(index).map(|i| i + lo).map_err(|e| e.to_string());
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{} value '{}' is not valid; use {}",
                self.name(),
                echo(token),
                self.syntax()
            ));
        }
        match token.parse::<u32>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(format!(
                "{} value '{}' is out of range; use {}",
                self.name(),
                echo(token),
                self.syntax()
            )),
        }
    }
}

impl CronSchedule {
    fn parse_fields(input: &str, body: &str) -> Result<Self, ScheduleError> {
        let parts: Vec<&str> = body.split_whitespace().collect();
        if parts.len() != FIELDS.len() {
            let hint = match parts.len() {
                5 => "; AWS cron needs a year field too, e.g. add '*' at the end",
                7 => "; AWS cron has no seconds field, remove the first field",
                _ => "",
            };
            return Err(ScheduleError::invalid(
                input,
                format!(
                    "a cron expression needs exactly 6 fields (minutes hours day-of-month \
                     month day-of-week year), found {}{hint}",
                    parts.len()
                ),
            ));
        }

        let dom_any = parts[2] == "?";
        let dow_any = parts[4] == "?";
        match (dom_any, dow_any) {
            (true, true) => {
                return Err(ScheduleError::invalid(
                    input,
                    "only one of day-of-month or day-of-week may be '?'; use '*' in the other",
                ));
            }
            (false, false) => {
                return Err(ScheduleError::invalid(
                    input,
                    "one of day-of-month or day-of-week must be '?', e.g. 'cron(0 10 * * ? *)' \
                     or 'cron(0 10 ? * MON-FRI *)'",
                ));
            }
            _ => {}
        }

        let mut translated = Vec::with_capacity(FIELDS.len());
        for (field, part) in FIELDS.iter().zip(&parts) {
            let croner_field = translate_field(*field, part).map_err(|reason| ScheduleError::invalid(input, reason))?;
            translated.push(croner_field);
        }

        // croner wants "sec min hour dom month dow year"; AWS has no seconds.
        let pattern = format!("0 {}", translated.join(" "));
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Required)
            .alternative_weekdays(true)
            .build()
            .parse(&pattern)
            .map_err(|e| ScheduleError::invalid(input, format!("the expression cannot be evaluated: {e}")))?;

        Ok(Self {
            fields: parts.iter().map(|p| p.to_ascii_uppercase()).collect(),
            cron: Box::new(cron),
        })
    }

    /// See [`RotationSchedule::next_after`].
    fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = UtcWallClock::from_timestamp(t)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        TimeZone::UTC.to_timestamp(next.0).ok().filter(|n| *n > t)
    }

    /// See [`RotationSchedule::shortest_interval`].
    ///
    /// Hours and minutes fire the same way on every matching day, so the
    /// firings within a day are known up front and only the calendar needs
    /// scanning: consecutive firings are either on the same day, or the last
    /// firing of one matching day and the first of the next. Walking every
    /// day up to the end of the AWS year range (2199) is exact and bounded
    /// (at most ~84,000 days), and most schedules stop after a day or two.
    fn shortest_interval(&self, from: Timestamp) -> Option<Duration> {
        let pattern = &self.cron.pattern;
        let mut times: Vec<u32> = Vec::new();
        for hour in pattern.hours.values() {
            for minute in pattern.minutes.values() {
                times.push(u32::from(hour) * 60 + u32::from(minute));
            }
        }
        times.sort_unstable();
        let (&first, &last) = (times.first()?, times.last()?);
        let full_day_gap = times.windows(2).map(|w| w[1] - w[0]).min();
        // Nothing can beat the full-day gap or back-to-back days, so the
        // scan stops as soon as it has seen the smaller of the two.
        let lower_bound = full_day_gap.map_or(1440 - last + first, |g| g.min(1440 - last + first));

        let from_civil = TimeZone::UTC.to_datetime(from);
        let first_day = civil::Date::new(FIRST_YEAR, 1, 1).ok()?;
        let last_day = civil::Date::new(LAST_YEAR, 12, 31).ok()?;
        let mut day = from_civil.date().max(first_day);
        // On the day of `from`, only firings after it count. Firings are on
        // whole minutes, so one at `from`'s own minute is at or before it.
        let mut first_day_times: Vec<u32> = times.clone();
        if day == from_civil.date() {
            let from_minute = u32::try_from(from_civil.hour()).ok()? * 60 + u32::try_from(from_civil.minute()).ok()?;
            first_day_times.retain(|m| *m > from_minute);
        }

        let mut day_index: u64 = 0;
        let mut previous_last: Option<u64> = None;
        let mut best: Option<u64> = None;
        while day <= last_day {
            if self.day_matches(day) {
                let todays = if day_index == 0 { &first_day_times } else { &times };
                if let (Some(&day_first), Some(&day_last)) = (todays.first(), todays.last()) {
                    let base = day_index * 1440;
                    let across = previous_last.map(|prev| base + u64::from(day_first) - prev);
                    let within = if day_index == 0 {
                        todays.windows(2).map(|w| w[1] - w[0]).min()
                    } else {
                        full_day_gap
                    };
                    for gap in across.into_iter().chain(within.map(u64::from)) {
                        best = Some(best.map_or(gap, |b| b.min(gap)));
                    }
                    previous_last = Some(base + u64::from(day_last));
                }
            }
            if best.is_some_and(|b| b <= u64::from(lower_bound)) {
                break;
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
            day_index += 1;
        }
        best.map(|minutes| Duration::from_secs(minutes * 60))
    }

    fn day_matches(&self, day: civil::Date) -> bool {
        let pattern = &self.cron.pattern;
        let year = i32::from(day.year());
        let (Ok(month), Ok(dom)) = (u32::try_from(day.month()), u32::try_from(day.day())) else {
            return false;
        };
        let weekday = Weekday::from_days_from_sunday(u32::from(day.weekday().to_sunday_zero_offset().unsigned_abs()));
        pattern.year_match(year).unwrap_or(false)
            && pattern.month_match(month).unwrap_or(false)
            && pattern.day_match(year, month, dom, weekday).unwrap_or(false)
    }
}

/// Checks one AWS cron field and rewrites it in croner's dialect.
///
/// The AWS rules are checked here rather than left to croner because croner
/// accepts a superset (POSIX weekdays, `+`, `#` in lists, ...) and its error
/// messages talk about bit positions, not about what the user should write.
fn translate_field(field: Field, part: &str) -> Result<String, String> {
    let name = field.name();
    let (lo, hi) = field.range();
    if part == "?" {
        return if matches!(field, Field::DayOfMonth | Field::DayOfWeek) {
            Ok("*".to_owned())
        } else {
            Err(format!(
                "'?' is only allowed in day-of-month or day-of-week, not in {name}"
            ))
        };
    }
    if part == "*" {
        // croner's year field spans 1-5000; AWS stops at 2199.
        return Ok(if field == Field::Year {
            format!("{lo}-{hi}")
        } else {
            "*".to_owned()
        });
    }
    if part.contains('?') {
        return Err(format!("'?' must be the whole {name} field"));
    }

    let upper = part.to_ascii_uppercase();
    // Special day forms that must stand alone, as in Quartz and AWS.
    match field {
        Field::DayOfMonth if upper.contains(['L', 'W']) => {
            if upper.contains(',') {
                return Err("'L' and 'W' must be used alone in day-of-month, e.g. 'L', 'LW' or '15W'".to_owned());
            }
            if upper == "L" || upper == "LW" {
                return Ok(upper);
            }
            if let Some(day) = upper.strip_suffix('W') {
                let day = field.value(day)?;
                return Ok(format!("{day}W"));
            }
            return Err(format!(
                "day-of-month '{}' is not valid; use a day 1-31, 'L' (last day), 'LW' (last \
                 weekday) or e.g. '15W' (weekday nearest the 15th)",
                echo(part)
            ));
        }
        Field::DayOfWeek if upper.contains(['L', '#']) => {
            if upper.contains(',') {
                return Err("'L' and '#' must be used alone in day-of-week, e.g. 'L', '6L' or '2#1'".to_owned());
            }
            if upper == "L" {
                // AWS: 'L' alone in day-of-week is the last day of the week.
                return Ok("7".to_owned());
            }
            if let Some((day, nth)) = upper.split_once('#') {
                let day = field.value(day)?;
                return match nth.parse::<u8>() {
                    Ok(n @ 1..=5) if nth.bytes().all(|b| b.is_ascii_digit()) => Ok(format!("{day}#{n}")),
                    _ => Err(format!(
                        "the number after '#' in day-of-week '{}' must be 1-5 (e.g. '2#1' is \
                         the first Monday)",
                        echo(part)
                    )),
                };
            }
            if let Some(day) = upper.strip_suffix('L') {
                let day = field.value(day)?;
                return Ok(format!("{day}#L"));
            }
            return Err(format!(
                "day-of-week '{}' is not valid; use e.g. 'MON-FRI', 'L' (Saturday), '6L' (last \
                 Friday) or '2#1' (first Monday)",
                echo(part)
            ));
        }
        _ => {}
    }

    let mut out = Vec::new();
    for item in upper.split(',') {
        if item.is_empty() {
            return Err(format!("{name} field '{}' has an empty list entry", echo(part)));
        }
        out.push(translate_item(field, item)?);
    }
    Ok(out.join(","))
}

/// Translates one list entry: `*/S`, `A`, `A-B`, `A/S` or `A-B/S`.
fn translate_item(field: Field, item: &str) -> Result<String, String> {
    let name = field.name();
    let (lo, hi) = field.range();
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            if !field.allows_step() {
                return Err(format!(
                    "'/' is not supported in {name}; list the days instead, e.g. 'MON,WED,FRI'"
                ));
            }
            let step = match step.parse::<u32>() {
                Ok(s) if s >= 1 && s <= hi && step.bytes().all(|b| b.is_ascii_digit()) => s,
                _ => {
                    return Err(format!(
                        "the step in {name} '{}' must be a whole number from 1 to {hi}",
                        echo(item)
                    ));
                }
            };
            (range, Some(step))
        }
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        if step.is_none() {
            return Err(format!("'*' must be the whole {name} field"));
        }
        (lo, hi)
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (field.value(a)?, field.value(b)?);
        if a > b {
            return Err(format!(
                "{name} range '{}' runs backwards; split it in two, e.g. '{a}-{hi},{lo}-{b}'",
                echo(range)
            ));
        }
        (a, b)
    } else {
        let a = field.value(range)?;
        // 'A/S' means "from A in steps of S", up to the end of the range.
        (a, if step.is_some() { hi } else { a })
    };
    Ok(match step {
        Some(step) => format!("{start}-{end}/{step}"),
        None if start == end => start.to_string(),
        None => format!("{start}-{end}"),
    })
}

/// A UTC wall-clock time, the only time type croner needs here: UTC has no
/// gaps or repeated hours, so every wall-clock time resolves to one instant.
///
/// A newtype because croner's own `jiff` support is behind a feature this
/// crate does not enable, and the orphan rule forbids implementing croner's
/// trait for jiff's type directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcWallClock(civil::DateTime);

impl UtcWallClock {
    /// Drops sub-seconds: cron firings are whole minutes, so truncating `t`
    /// and searching exclusively still yields the first firing after `t`.
    fn from_timestamp(t: Timestamp) -> Option<Self> {
        let dt = TimeZone::UTC.to_datetime(t);
        dt.with().subsec_nanosecond(0).build().ok().map(Self)
    }
}

impl CronDateTime for UtcWallClock {
    fn to_civil(&self) -> CivilDateTime {
        let dt = self.0;
        // jiff keeps every part in range and positive (years outside 1-9999
        // never reach croner, whose search stops at year 5000).
        let part = |v: i8| u32::from(v.unsigned_abs());
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(i32::from(dt.year()), part(dt.month()), part(dt.day())),
            CivilTime::from_parts_unchecked(part(dt.hour()), part(dt.minute()), part(dt.second())),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(u32::from(self.0.weekday().to_sunday_zero_offset().unsigned_abs()))
    }

    fn resolve_civil(&self, c: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let narrow = |v: u32| i8::try_from(v).map_err(|_| CronError::InvalidTime);
        let year = i16::try_from(c.year()).map_err(|_| CronError::InvalidDate)?;
        civil::DateTime::new(
            year,
            narrow(c.month())?,
            narrow(c.day())?,
            narrow(c.hour())?,
            narrow(c.minute())?,
            narrow(c.second())?,
            0,
        )
        .map(|dt| Resolution::Single(Self(dt)))
        .map_err(|_| CronError::InvalidDate)
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(SignedDuration::from_secs(seconds)).ok().map(Self)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// `t + d`, or `None` past the end of representable time.
fn add(t: Timestamp, d: Duration) -> Option<Timestamp> {
    t.checked_add(d).ok()
}

/// `t + d`, clamped to the end of representable time.
fn add_saturating(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// `t - d`, clamped to the start of representable time.
fn sub_saturating(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

/// What is known about the current token when planning its renewal.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPlan<'a> {
    /// When the current token was minted (the last rotation).
    pub issued_at: Timestamp,
    /// The recorded expiry of the current token.
    pub expires_at: Timestamp,
    /// Rotate when this much lifetime remains.
    pub renew_before: Duration,
    /// The user's rotation schedule, if any.
    pub schedule: Option<&'a RotationSchedule>,
}

/// When the current token should be replaced.
///
/// The answer is the earlier of
/// - the expiry deadline `expires_at - renew_before`, moved earlier by
///   `jitter` so that many objects minted together do not all hit AWS in the
///   same second, and
/// - the next firing of the schedule after `issued_at`,
///
/// but not before `issued_at + MIN_WRITE_INTERVAL`, to respect AWS's
/// one-write-per-10-minutes guidance. That floor yields to expiry: if the
/// expiry deadline itself falls before the floor (a short-lived token, e.g.
/// because the signing credentials expire soon), the expiry deadline wins,
/// because a token that expires in the secret breaks every client, while an
/// extra write only goes against a rate guideline.
///
/// The result may lie in the past; callers should then rotate immediately.
pub fn next_rotation_time(plan: &RenewalPlan<'_>, jitter: Duration) -> Timestamp {
    let floor = add_saturating(plan.issued_at, MIN_WRITE_INTERVAL);
    let deadline = sub_saturating(plan.expires_at, plan.renew_before);
    let by_expiry = sub_saturating(deadline, jitter);
    let by_expiry = if deadline >= floor {
        // Jitter may not push below the floor while the deadline is after it.
        by_expiry.max(floor)
    } else {
        by_expiry
    };
    let by_schedule = plan
        .schedule
        .and_then(|s| s.next_after(plan.issued_at))
        .map(|t| t.max(floor));
    by_schedule.map_or(by_expiry, |s| s.min(by_expiry))
}

/// A deterministic renewal jitter for `seed`, in
/// `[0, min(renew_before / 10, 2 minutes)]`.
///
/// Callers pass a hash of the object's uid and rotation number, so a restarted
/// operator computes the same renewal time, while different objects (and
/// successive rotations of one object) spread evenly over the window. The
/// mixing is spelled out (SplitMix64) rather than taken from a seeded RNG so
/// the value cannot change with a dependency upgrade.
pub fn renewal_jitter(renew_before: Duration, seed: u64) -> Duration {
    let window = (renew_before / 10).min(MAX_JITTER);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let span = u128::from(window_ms) + 1;
    // Multiply-shift maps the 64-bit hash onto [0, span) without the bias of
    // a modulo.
    let offset = (u128::from(splitmix64(seed)) * span) >> 64;
    Duration::from_millis(u64::try_from(offset).unwrap_or(window_ms))
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How long to wait after `consecutive_failures` failures in a row:
/// exponential backoff with full jitter (base 5 s, factor 2, cap 5 minutes),
/// never less than 1 s.
///
/// `random_unit` is a uniform sample from `[0, 1)` supplied by the caller so
/// the function stays deterministic; out-of-range values are clamped and NaN
/// counts as 0. Zero failures is treated like one.
pub fn failure_backoff(consecutive_failures: u32, random_unit: f64) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1);
    // 2^6 * 5 s already exceeds the cap, so larger shifts are never needed.
    let ceiling = BACKOFF_BASE
        .checked_mul(1u32 << doublings.min(16))
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP));
    let unit = if random_unit.is_nan() {
        0.0
    } else {
        random_unit.clamp(0.0, 1.0)
    };
    ceiling.mul_f64(unit).max(BACKOFF_FLOOR)
}

/// When to retry after a failure at `now`.
///
/// Normally `now + failure_backoff(..)`. While the current token is still
/// valid, the retry is pulled in so it happens no later than
/// [`EXPIRY_RETRY_MARGIN`] before `expires_at`, and once inside that margin
/// retries use the base backoff, but never later than `expires_at` itself: a
/// token about to expire deserves a faster retry than the growing backoff
/// would give it, and the retry at the expiry is also what turns `Ready`
/// False on time (a retry a few seconds after it would report the expiry late).
pub fn retry_time(
    now: Timestamp,
    consecutive_failures: u32,
    random_unit: f64,
    expires_at: Option<Timestamp>,
) -> Timestamp {
    let backoff = failure_backoff(consecutive_failures, random_unit);
    let retry = add_saturating(now, backoff);
    let Some(expires_at) = expires_at else {
        return retry;
    };
    let last_safe = sub_saturating(expires_at, EXPIRY_RETRY_MARGIN);
    if last_safe > now {
        retry.min(last_safe)
    } else if expires_at > now {
        retry
            .min(add_saturating(now, BACKOFF_BASE.max(BACKOFF_FLOOR)))
            .min(expires_at)
    } else {
        retry
    }
}

/// The Go duration grammar the API server accepts for `duration()` (`1h30m`, `90s`, `1.5h`),
/// without a sign: one or more `<number><unit>` parts, units `ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`. Also the CRD's `pattern` for duration fields (so admission refuses the rest).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Parses a duration of the [`DURATION_PATTERN`] grammar, up to 10,000 hours. Never panics:
/// stored objects are untrusted input (kube's own Go-duration parser panics on `2h-1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_secs(10_000 * 3_600);
    let invalid = || format!("{text:?} is not a duration like 1h, 20m or 1h30m");
    if text.is_empty() || text.len() > 64 {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let well_formed = !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (number.len() == whole.len() || (!fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit())));
        if !well_formed {
            return Err(invalid());
        }
        let (unit_nanos, unit_len) = match tail {
            t if t.starts_with("ns") => (1u128, 2),
            t if t.starts_with("us") => (1_000, 2),
            t if t.starts_with("µs") => (1_000, "µs".len()),
            t if t.starts_with("ms") => (1_000_000, 2),
            t if t.starts_with('s') => (1_000_000_000, 1),
            t if t.starts_with('m') => (60_000_000_000, 1),
            t if t.starts_with('h') => (3_600_000_000_000, 1),
            _ => return Err(invalid()),
        };
        // Whole part and up to 9 fraction digits in integer nanoseconds: exact, and no float
        // conversion that could panic.
        let whole: u128 = (whole.len() <= 12)
            .then_some(whole)
            .and_then(|w| w.parse().ok())
            .ok_or_else(invalid)?;
        let digits = &fraction[..fraction.len().min(9)];
        let scale = 10u128.pow(digits.len() as u32);
        let fraction_value: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| invalid())?
        };
        let nanos = whole * unit_nanos + fraction_value * unit_nanos / scale;
        total = total.saturating_add(Duration::from_nanos(u64::try_from(nanos).map_err(|_| invalid())?));
        if total > MAX {
            return Err(format!("{text:?} is too long a duration"));
        }
        rest = &tail[unit_len..];
    }
    Ok(total)
}

/// Formats `d` compactly in Go duration syntax (`1h20m`, `45s`, `1.5s`,
/// `250ms`), so messages read naturally and the text can be pasted back into
/// any field that takes a Go duration.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let nanos = d.subsec_nanos();
    if d.as_secs() == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (hours, minutes, seconds) = (secs / 3_600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos > 0 {
        out.push_str(&seconds.to_string());
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

#[cfg(test)]
mod duration_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_go_grammar_exactly() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15m0.5s").unwrap(), Duration::from_millis(900_500));
        assert_eq!(parse_duration("0.25h").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("168h").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2µs").unwrap(), Duration::from_micros(2));
    }

    #[test]
    fn refuses_everything_else_without_panicking() {
        let long = "1h".repeat(40);
        for text in [
            "",
            "h",
            "1",
            "-1h",
            "+1h",
            "2h-1h",
            "1h junk",
            "1.5e1m",
            "1e3h",
            ".5h",
            "5.h",
            "1y",
            "1d",
            "1H",
            " 1h",
            "1h ",
            "99999999999999999999999h",
            "10001h",
            "1..5h",
            "٣h",
            "1h\n",
            long.as_str(),
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} must be refused");
        }
    }

    #[test]
    fn the_crd_pattern_accepts_exactly_what_the_parser_accepts() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "1h", "1h30m", "15m0.5s", "2µs", "0.25h", "2h-1h", "1h junk", "-1h", "1.5e1m", ".5h", "5.h", "1y", "",
        ] {
            assert_eq!(pattern.is_match(text), parse_duration(text).is_ok(), "{text:?}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sched(s: &str) -> RotationSchedule {
        s.parse().unwrap_or_else(|e| panic!("{s} should parse: {e}"))
    }

    fn err(s: &str) -> String {
        match s.parse::<RotationSchedule>() {
            Ok(parsed) => panic!("{s} should be rejected, parsed as {parsed}"),
            Err(e) => e.to_string(),
        }
    }

    fn next(expr: &str, after: &str) -> Option<Timestamp> {
        sched(expr).next_after(ts(after))
    }

    fn mins(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    /// Monday.
    const MON_1700: &str = "2026-11-23T17:00:00Z";

    // ---- rate ----

    #[test]
    fn rate_parses_all_units() {
        assert_eq!(sched("rate(10 minutes)"), RotationSchedule::Rate(mins(10)));
        assert_eq!(sched("rate(1 minute)"), RotationSchedule::Rate(mins(1)));
        assert_eq!(sched("rate(1 hour)"), RotationSchedule::Rate(mins(60)));
        assert_eq!(sched("rate(12 hours)"), RotationSchedule::Rate(mins(720)));
        assert_eq!(sched("rate(1 day)"), RotationSchedule::Rate(mins(1440)));
        assert_eq!(sched("rate(7 days)"), RotationSchedule::Rate(mins(7 * 1440)));
        assert_eq!(sched("rate(1000 days)"), RotationSchedule::Rate(MAX_RATE));
    }

    #[test]
    fn rate_tolerates_whitespace() {
        assert_eq!(sched("rate( 2  hours )"), RotationSchedule::Rate(mins(120)));
        assert_eq!(sched("  rate(2 hours)\n"), RotationSchedule::Rate(mins(120)));
        assert_eq!(sched("rate\t(2\thours)"), RotationSchedule::Rate(mins(120)));
    }

    #[test]
    fn rate_enforces_singular_and_plural() {
        assert!(err("rate(1 hours)").contains("use 'rate(1 hour)'"));
        assert!(err("rate(1 days)").contains("use 'rate(1 day)'"));
        assert!(err("rate(5 hour)").contains("use 'rate(5 hours)'"));
        assert!(err("rate(30 minute)").contains("use 'rate(30 minutes)'"));
    }

    #[test]
    fn rate_rejects_bad_values_with_hints() {
        assert!(err("rate(0 hours)").contains("at least 1"));
        assert!(err("rate(-1 hours)").contains("positive whole number"));
        assert!(err("rate(+2 hours)").contains("positive whole number"));
        assert!(err("rate(1.5 hours)").contains("positive whole number"));
        assert!(err("rate(two hours)").contains("positive whole number"));
        assert!(err("rate(2 weeks)").contains("unknown rate unit 'weeks'"));
        assert!(err("rate(30 seconds)").contains("minute(s), hour(s) or day(s)"));
        assert!(err("rate(2 HOURS)").contains("unknown rate unit"));
        assert!(err("rate(1001 days)").contains("at most 1000 days"));
        assert!(err("rate(99999999999999999999999 minutes)").contains("at most 1000 days"));
        assert!(err("rate(2)").contains("rate(<value> <unit>)"));
        assert!(err("rate(2 hours extra)").contains("rate(<value> <unit>)"));
        assert!(err("rate()").contains("rate(<value> <unit>)"));
    }

    #[test]
    fn rejects_unknown_forms() {
        assert!(err("").contains("expected 'rate(<value> <unit>)' or 'cron("));
        assert!(err("every 2 hours").contains("expected 'rate("));
        assert!(err("Rate(2 hours)").contains("write 'rate' in lower case"));
        assert!(err("at(2026-01-01T00:00:00)").contains("expected 'rate("));
        assert!(err("rate(2 hours").contains("missing closing ')'"));
        assert!(err("rate((2 hours))").contains("unexpected parenthesis"));
        assert!(err("rate(2 hours) x").contains("missing closing ')'"));
    }

    #[test]
    fn error_message_format_matches_status_condition_style() {
        assert_eq!(
            err("cron(0 10 * * * *)"),
            "invalid schedule \"cron(0 10 * * * *)\": one of day-of-month or day-of-week must \
             be '?', e.g. 'cron(0 10 * * ? *)' or 'cron(0 10 ? * MON-FRI *)'"
        );
    }

    #[test]
    fn rate_next_after_counts_from_last_rotation() {
        assert_eq!(
            next("rate(12 hours)", "2026-11-23T17:00:05.5Z"),
            Some(ts("2026-11-24T05:00:05.5Z"))
        );
        assert_eq!(next("rate(1 day)", "9999-12-30T00:00:00Z"), None);
    }

    #[test]
    fn display_normalises() {
        for (input, shown) in [
            ("rate(60 minutes)", "rate(1 hour)"),
            ("rate( 48 hours )", "rate(2 days)"),
            ("rate(90 minutes)", "rate(90 minutes)"),
            ("rate(1 minute)", "rate(1 minute)"),
            ("cron(0  18 ? * mon-fri *)", "cron(0 18 ? * MON-FRI *)"),
            ("cron(0 0 l * ? *)", "cron(0 0 L * ? *)"),
        ] {
            let parsed = sched(input);
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(sched(shown), parsed, "display must parse back to the same schedule");
        }
    }

    // ---- cron: AWS documented examples ----

    #[test]
    fn aws_examples_next_firing() {
        let cases = [
            // 10:00 every day.
            ("cron(0 10 * * ? *)", MON_1700, "2026-11-24T10:00:00Z"),
            // 12:15 every day.
            ("cron(15 12 * * ? *)", MON_1700, "2026-11-24T12:15:00Z"),
            // 18:00 Monday to Friday.
            ("cron(0 18 ? * MON-FRI *)", MON_1700, "2026-11-23T18:00:00Z"),
            (
                "cron(0 18 ? * MON-FRI *)",
                "2026-11-27T18:00:00Z",
                "2026-11-30T18:00:00Z",
            ),
            // 08:00 on the first of every month.
            ("cron(0 8 1 * ? *)", MON_1700, "2026-12-01T08:00:00Z"),
            // Every 15 minutes, strictly after.
            ("cron(0/15 * * * ? *)", MON_1700, "2026-11-23T17:15:00Z"),
            (
                "cron(0/15 * * * ? *)",
                "2026-11-23T17:14:59.999Z",
                "2026-11-23T17:15:00Z",
            ),
            // Every 10 minutes on weekdays; Friday night rolls to Monday.
            ("cron(0/10 * ? * MON-FRI *)", MON_1700, "2026-11-23T17:10:00Z"),
            (
                "cron(0/10 * ? * MON-FRI *)",
                "2026-11-27T23:55:00Z",
                "2026-11-30T00:00:00Z",
            ),
            // Every 5 minutes 08:00-17:55 on weekdays.
            ("cron(0/5 8-17 ? * MON-FRI *)", MON_1700, "2026-11-23T17:05:00Z"),
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "2026-11-23T17:55:00Z",
                "2026-11-24T08:00:00Z",
            ),
            // 09:00 on the first Monday of the month (2 = MON in AWS numbering).
            ("cron(0 9 ? * 2#1 *)", MON_1700, "2026-12-07T09:00:00Z"),
            // Midnight on the last day of the month.
            ("cron(0 0 L * ? *)", MON_1700, "2026-11-30T00:00:00Z"),
        ];
        for (expr, after, expected) in cases {
            assert_eq!(next(expr, after), Some(ts(expected)), "{expr} after {after}");
        }
    }

    #[test]
    fn last_day_of_february() {
        assert_eq!(
            next("cron(0 0 L * ? *)", "2027-02-01T00:00:00Z"),
            Some(ts("2027-02-28T00:00:00Z"))
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", "2028-02-01T00:00:00Z"),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        // 2100 is not a leap year.
        assert_eq!(
            next("cron(0 0 L 2 ? *)", "2100-01-01T00:00:00Z"),
            Some(ts("2100-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn leap_day_only_fires_in_leap_years() {
        let leap = sched("cron(0 0 29 2 ? *)");
        assert_eq!(leap.next_after(ts(MON_1700)), Some(ts("2028-02-29T00:00:00Z")));
        assert_eq!(
            leap.next_after(ts("2028-02-29T00:00:00Z")),
            Some(ts("2032-02-29T00:00:00Z"))
        );
        assert_eq!(leap.shortest_interval(ts(MON_1700)), Some(mins(4 * 365 * 1440 + 1440)));
        assert_eq!(leap.validate(ts(MON_1700)), Ok(()));
    }

    #[test]
    fn weekday_numbering_is_aws_quartz() {
        // 1 = Sunday ... 7 = Saturday.
        assert_eq!(next("cron(0 12 ? * 1 *)", MON_1700), Some(ts("2026-11-29T12:00:00Z")));
        assert_eq!(next("cron(0 12 ? * 7 *)", MON_1700), Some(ts("2026-11-28T12:00:00Z")));
        assert_eq!(
            next("cron(0 12 ? * SUN *)", MON_1700),
            next("cron(0 12 ? * 1 *)", MON_1700)
        );
        assert_eq!(
            next("cron(0 12 ? * 2-6 *)", "2026-11-27T12:00:00Z"),
            Some(ts("2026-11-30T12:00:00Z"))
        );
        assert!(err("cron(0 12 ? * 0 *)").contains("day-of-week value '0' is out of range"));
        assert!(err("cron(0 12 ? * 8 *)").contains("1-7 or SUN-SAT (1 = SUN)"));
    }

    #[test]
    fn special_day_forms() {
        // 'L' alone in day-of-week is Saturday.
        assert_eq!(next("cron(0 0 ? * L *)", MON_1700), Some(ts("2026-11-28T00:00:00Z")));
        // Last Friday of the month.
        assert_eq!(next("cron(0 0 ? * 6L *)", MON_1700), Some(ts("2026-11-27T00:00:00Z")));
        assert_eq!(next("cron(0 0 ? * FRIL *)", MON_1700), Some(ts("2026-11-27T00:00:00Z")));
        // Second Tuesday.
        assert_eq!(next("cron(0 0 ? * 3#2 *)", MON_1700), Some(ts("2026-12-08T00:00:00Z")));
        // 2026-11-15 is a Sunday: the nearest weekday is Monday the 16th.
        assert_eq!(
            next("cron(0 0 15W * ? *)", "2026-11-01T00:00:00Z"),
            Some(ts("2026-11-16T00:00:00Z"))
        );
        // 2027-05-01 is a Saturday: 'W' stays in the month, so Monday the 3rd.
        assert_eq!(
            next("cron(0 0 1W * ? *)", "2027-04-30T00:00:00Z"),
            Some(ts("2027-05-03T00:00:00Z"))
        );
        // Last weekday: 2027-01-31 is a Sunday, so Friday the 29th.
        assert_eq!(
            next("cron(0 0 LW * ? *)", "2027-01-01T00:00:00Z"),
            Some(ts("2027-01-29T00:00:00Z"))
        );
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        assert_eq!(
            next("cron(0,30 9-17/4 * * ? *)", MON_1700),
            Some(ts("2026-11-23T17:30:00Z"))
        );
        assert_eq!(
            next("cron(0 0 1 JAN,jul ? *)", MON_1700),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        assert_eq!(next("cron(0 0 1 */6 ? *)", MON_1700), Some(ts("2027-01-01T00:00:00Z")));
        assert_eq!(next("cron(0 0 */10 * ? *)", MON_1700), Some(ts("2026-12-01T00:00:00Z")));
        assert_eq!(
            next("cron(0 0 ? * MON,WED,FRI *)", MON_1700),
            Some(ts("2026-11-25T00:00:00Z"))
        );
    }

    #[test]
    fn year_field() {
        assert_eq!(
            next("cron(0 0 1 1 ? 2027-2030)", MON_1700),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2030/5)", MON_1700),
            Some(ts("2030-01-01T00:00:00Z"))
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2030/5)", "2030-01-01T00:00:00Z"),
            Some(ts("2035-01-01T00:00:00Z"))
        );
        assert_eq!(next("cron(0 0 1 1 ? 2020)", MON_1700), None);
        // '*' ends with the AWS range.
        assert_eq!(
            next("cron(59 23 31 12 ? *)", "2199-06-01T00:00:00Z"),
            Some(ts("2199-12-31T23:59:00Z"))
        );
        assert_eq!(next("cron(59 23 31 12 ? *)", "2199-12-31T23:59:00Z"), None);
        assert_eq!(next("cron(0 0 * * ? *)", "9999-12-30T00:00:00Z"), None);
        // Before 1970 the search starts at the AWS range.
        assert_eq!(
            next("cron(0 0 1 1 ? *)", "1900-06-01T00:00:00Z"),
            Some(ts("1970-01-01T00:00:00Z"))
        );
        assert!(err("cron(0 0 1 1 ? 1969)").contains("year value '1969' is out of range"));
        assert!(err("cron(0 0 1 1 ? 2200)").contains("1970-2199"));
    }

    #[test]
    fn ended_year_range_never_fires_and_is_rejected() {
        let ended = sched("cron(0 0 1 1 ? 2020-2025)");
        assert_eq!(ended.next_after(ts(MON_1700)), None);
        let e = ended.validate(ts(MON_1700)).unwrap_err();
        assert!(matches!(e, ScheduleError::NeverFires { .. }));
        assert!(e.to_string().contains("never fires after 2026-11-23T17:00:00Z"));
        assert!(e.to_string().contains("year field"));
    }

    #[test]
    fn impossible_date_never_fires() {
        let s = sched("cron(0 0 30 2 ? *)");
        assert_eq!(s.next_after(ts(MON_1700)), None);
        assert!(s.validate(ts(MON_1700)).is_err());
        assert_eq!(s.shortest_interval(ts(MON_1700)), None);
    }

    // ---- cron: syntax errors ----

    #[test]
    fn cron_day_field_rules() {
        assert!(err("cron(0 10 * * * *)").contains("one of day-of-month or day-of-week must be '?'"));
        assert!(err("cron(0 10 1 * MON *)").contains("must be '?'"));
        assert!(err("cron(0 10 ? * ? *)").contains("only one of day-of-month or day-of-week"));
        assert!(err("cron(0 10 1? * ? *)").contains("'?' must be the whole day-of-month field"));
        assert!(err("cron(? 10 1 * ? *)").contains("'?' is only allowed in day-of-month"));
    }

    #[test]
    fn cron_field_count() {
        assert!(err("cron(0 10 * * ?)").contains("found 5; AWS cron needs a year field"));
        assert!(err("cron(0 0 10 * * ? *)").contains("found 7; AWS cron has no seconds field"));
        assert!(err("cron()").contains("exactly 6 fields"));
    }

    #[test]
    fn cron_rejects_bad_fields_with_hints() {
        for (expr, needle) in [
            ("cron(60 10 * * ? *)", "minutes value '60' is out of range; use 0-59"),
            ("cron(0 24 * * ? *)", "hours value '24' is out of range"),
            ("cron(0 0 32 * ? *)", "day-of-month value '32'"),
            ("cron(0 0 0 * ? *)", "day-of-month value '0'"),
            ("cron(0 0 1 13 ? *)", "month value '13'"),
            ("cron(0 0 1 FOO ? *)", "month value 'FOO' is not valid"),
            ("cron(0 0 ? * MON-FRI/2 *)", "'/' is not supported in day-of-week"),
            ("cron(0 0 ? * 3#1,6#3 *)", "'L' and '#' must be used alone"),
            ("cron(0 0 ? * 3#6 *)", "must be 1-5"),
            ("cron(0 0 ? * 3#0 *)", "must be 1-5"),
            ("cron(0 0 ? * 3# *)", "must be 1-5"),
            ("cron(0 0 1,15W * ? *)", "'L' and 'W' must be used alone"),
            ("cron(0 0 L-3 * ? *)", "day-of-month 'L-3' is not valid"),
            ("cron(0 0 1 L ? *)", "month value 'L' is not valid"),
            ("cron(0 22-2 * * ? *)", "split it in two, e.g. '22-23,0-2'"),
            (
                "cron(0/0 * * * ? *)",
                "step in minutes '0/0' must be a whole number from 1 to 59",
            ),
            ("cron(0/99 * * * ? *)", "from 1 to 59"),
            ("cron(*/ * * * ? *)", "step in minutes"),
            ("cron(1,,2 * * * ? *)", "empty list entry"),
            ("cron(1-2-3 * * * ? *)", "not valid"),
            ("cron(*,5 * * * ? *)", "'*' must be the whole minutes field"),
            ("cron(+5 * * * ? *)", "minutes value '+5' is not valid"),
            (
                "cron(5 * * * ? 99999999999999)",
                "year value '99999999999999' is out of range",
            ),
        ] {
            let message = err(expr);
            assert!(message.contains(needle), "{expr}: {message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let long_a = "a".repeat(10_000);
        let long_cron = format!("cron({} * * * ? *)", "1,".repeat(5_000));
        let long_rate = format!("rate({} minutes)", "9".repeat(10_000));
        let mut corpus: Vec<String> = vec![
            long_a,
            long_cron,
            long_rate,
            "(".repeat(200),
            format!("cron{}", "(".repeat(100)),
            format!("rate({}1 hour{})", "(".repeat(50), ")".repeat(50)),
        ];
        for s in [
            "",
            " ",
            "(",
            ")",
            "()",
            "rate",
            "cron",
            "rate(",
            "cron(",
            "rate)",
            "cron)(",
            "rate(())",
            "cron((0 0 * * ? *))",
            "rate(1 hour))",
            "cron(0 0 * * ? *) ",
            "rate(18446744073709551616 minutes)",
            "rate(18446744073709551615 days)",
            "rate(4294967296 hours)",
            "cron(4294967296 0 * * ? *)",
            "cron(0 0 * * ? 65536)",
            "cron(0 0 * * ? 5001)",
            "cron(0 0 ? * 7#5 2199)",
            "rate(１ hour)",
            "rate(1 hοur)",
            "cron(０ 0 * * ? *)",
            "cron(0 0 * * ？ *)",
            "cron(0 0 * * ? *)\u{0}",
            "rate(1\u{0}hour)",
            "🦀",
            "cron(🦀 🦀 🦀 🦀 🦀 🦀)",
            "cron(- - - - - -)",
            "cron(/ / / / / /)",
            "cron(# # ? # # #)",
            "cron(L L L L L L)",
            "cron(W W W W ? W)",
            "cron(0 0 W * ? *)",
            "cron(0 0 LWL * ? *)",
            "cron(0 0 ? * #1 *)",
            "cron(0 0 ? * L# *)",
            "cron(0 0 ? * LL *)",
            "cron(0 0 ? * 1#L *)",
            "cron(0 0 ? * SUN-SAT#2 *)",
            "cron(0 0 31W 2 ? *)",
            "cron(0 0 1-31/31 * ? *)",
            "cron(0-59/1 0-23/1 1-31/1 1-12/1 ? 1970-2199/1)",
            "cron(*/1 */1 ? * * */1)",
            "cron(0 0 ? * MONDAY *)",
            "cron(0 0 ? * MON-SUN *)",
            "cron(0 0 ? * -SUN *)",
            "cron(0 0 ? JANFEB * *)",
            "cron(@daily)",
            "cron(0 0 * * ? * *)",
            "rate(-0 minutes)",
            "rate(0x10 minutes)",
            "rate(1e3 minutes)",
            "rate(NaN hours)",
            "rate(1 hour)\n\nrate(1 hour)",
            "cron(0\n0\n*\n*\n?\n*)",
        ] {
            corpus.push(s.to_owned());
        }
        let from = ts(MON_1700);
        for input in &corpus {
            if let Ok(parsed) = input.parse::<RotationSchedule>() {
                let _ = parsed.next_after(from);
                let _ = parsed.shortest_interval(from);
                let _ = parsed.validate(from);
                let _ = parsed.next_after(Timestamp::MAX);
                let _ = parsed.next_after(Timestamp::MIN);
                let _ = parsed.to_string();
            }
        }
    }

    #[test]
    fn long_input_is_rejected_and_not_echoed_in_full() {
        let message = err(&format!("rate({} minutes)", "9".repeat(10_000)));
        assert!(message.contains("at most 256 characters"));
        assert!(message.len() < 400, "{message}");
        let message = err(&"é".repeat(300));
        assert!(message.contains('…'));
    }

    // ---- shortest interval and validation ----

    #[test]
    fn shortest_interval_of_cron() {
        let from = ts(MON_1700);
        for (expr, expected) in [
            ("cron(0/5 * * * ? *)", mins(5)),
            ("cron(0/10 * * * ? *)", mins(10)),
            ("cron(0,5 * * * ? *)", mins(5)),
            ("cron(0 * * * ? *)", mins(60)),
            ("cron(0 10 * * ? *)", mins(1440)),
            ("cron(0 18 ? * MON-FRI *)", mins(1440)),
            // 23:59 one day, 00:00 the next: one minute apart across midnight.
            ("cron(0,59 0,23 * * ? *)", mins(1)),
            // The 31st and the 1st are adjacent only at a month boundary.
            ("cron(0,59 0,23 1,31 * ? *)", mins(1)),
            ("cron(59 23 ? * MON *)", mins(7 * 1440)),
            // Only adjacent across a month boundary in leap years (Feb 29 to Mar 1).
            ("cron(0,59 0,23 1,29 2,3 ? *)", mins(1)),
            ("cron(0 8 1 * ? *)", mins(28 * 1440)),
        ] {
            assert_eq!(sched(expr).shortest_interval(from), Some(expected), "{expr}");
        }
        assert_eq!(sched("rate(3 hours)").shortest_interval(from), Some(mins(180)));
        assert_eq!(sched("cron(0 0 1 1 ? 2027)").shortest_interval(from), None);
        // Firings before `from` on the same day do not count.
        assert_eq!(
            sched("cron(0,5,30 17 23 11 ? 2026)").shortest_interval(ts("2026-11-23T17:03:00Z")),
            Some(mins(25))
        );
    }

    #[test]
    fn shortest_interval_scan_is_fast_for_sparse_schedules() {
        // Weekly with a 1-minute cross-midnight candidate that never happens
        // forces a scan to 2199.
        let started = std::time::Instant::now();
        let s = sched("cron(0,59 0,23 ? * MON *)");
        assert_eq!(s.shortest_interval(ts(MON_1700)), Some(mins(59)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn validate_enforces_minimum_write_interval() {
        let from = ts(MON_1700);
        assert_eq!(sched("rate(10 minutes)").validate(from), Ok(()));
        assert_eq!(sched("rate(11 minutes)").validate(from), Ok(()));
        let e = sched("rate(9 minutes)").validate(from).unwrap_err();
        assert_eq!(
            e,
            ScheduleError::TooFrequent {
                expression: "rate(9 minutes)".to_owned(),
                interval: mins(9),
                minimum: MIN_WRITE_INTERVAL,
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid schedule \"rate(9 minutes)\": it can fire 9m apart, but a secret may be \
             written at most once every 10m; choose a schedule whose firings are at least 10m \
             apart"
        );
        assert!(sched("rate(1 minute)").validate(from).is_err());
        assert!(sched("cron(0/5 * * * ? *)").validate(from).is_err());
        assert!(sched("cron(0,59 0,23 * * ? *)").validate(from).is_err());
        assert_eq!(sched("cron(0/10 * * * ? *)").validate(from), Ok(()));
        assert_eq!(sched("cron(0/10 * ? * MON-FRI *)").validate(from), Ok(()));
        assert!(sched("cron(0/5 8-17 ? * MON-FRI *)").validate(from).is_err());
        assert_eq!(sched("cron(0 0 L * ? *)").validate(from), Ok(()));
        assert_eq!(sched("cron(0 0 1 1 ? 2027)").validate(from), Ok(()));
    }

    // ---- renewal ----

    fn plan<'a>(
        issued: &str,
        expires: &str,
        renew_before_mins: u64,
        schedule: Option<&'a RotationSchedule>,
    ) -> RenewalPlan<'a> {
        RenewalPlan {
            issued_at: ts(issued),
            expires_at: ts(expires),
            renew_before: mins(renew_before_mins),
            schedule,
        }
    }

    #[test]
    fn renewal_by_expiry() {
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T18:00:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:45:00Z"));
        assert_eq!(
            next_rotation_time(&p, Duration::from_secs(90)),
            ts("2026-11-23T17:43:30Z")
        );
    }

    #[test]
    fn renewal_by_schedule_when_earlier() {
        let hourly = sched("cron(0 * * * ? *)");
        let p = plan("2026-11-23T17:20:00Z", "2026-11-24T17:20:00Z", 60, Some(&hourly));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T18:00:00Z"));

        let rate = sched("rate(6 hours)");
        let p = plan("2026-11-23T17:20:00Z", "2026-11-24T17:20:00Z", 60, Some(&rate));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T23:20:00Z"));

        // The expiry still wins when it comes first.
        let daily = sched("cron(0 10 * * ? *)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T20:00:00Z", 30, Some(&daily));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T19:30:00Z"));
    }

    #[test]
    fn renewal_respects_write_floor_for_schedule() {
        // The cron fires 2 minutes after the last rotation; the floor pushes it to +10m.
        let s = sched("cron(0/30 * * * ? *)");
        let p = plan("2026-11-23T17:28:00Z", "2026-11-24T17:28:00Z", 60, Some(&s));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:38:00Z"));
    }

    #[test]
    fn renewal_jitter_cannot_cross_floor_unless_expiry_forces_it() {
        // Deadline exactly at the floor: allowed, jitter clamped to the floor.
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:25:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, mins(2)), ts("2026-11-23T17:10:00Z"));
        // Deadline before the floor (short-lived token): expiry wins, jitter applies.
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:20:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:05:00Z"));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T17:04:00Z"));
        // Even with a schedule that is later.
        let s = sched("rate(1 day)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:20:00Z", 15, Some(&s));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:05:00Z"));
        // Already past the deadline: the answer is in the past (rotate now).
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:01:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T16:46:00Z"));
    }

    #[test]
    fn renewal_with_never_firing_schedule_falls_back_to_expiry() {
        let ended = sched("cron(0 0 1 1 ? 2020)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T18:00:00Z", 15, Some(&ended));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:45:00Z"));
    }

    #[test]
    fn renewal_saturates_at_extremes() {
        let p = RenewalPlan {
            issued_at: Timestamp::MIN,
            expires_at: Timestamp::MIN,
            renew_before: Duration::MAX,
            schedule: None,
        };
        assert_eq!(next_rotation_time(&p, Duration::MAX), Timestamp::MIN);
        let p = RenewalPlan {
            issued_at: Timestamp::MAX,
            expires_at: Timestamp::MAX,
            renew_before: Duration::ZERO,
            schedule: None,
        };
        assert_eq!(next_rotation_time(&p, Duration::ZERO), Timestamp::MAX);
    }

    #[test]
    fn jitter_bounds() {
        for seed in 0..2_000u64 {
            let j = renewal_jitter(mins(15), seed);
            assert!(j <= Duration::from_secs(90), "{j:?}");
            let j = renewal_jitter(mins(60 * 24), seed.wrapping_mul(0x9E37));
            assert!(j <= MAX_JITTER, "{j:?}");
        }
        assert_eq!(renewal_jitter(Duration::ZERO, 42), Duration::ZERO);
        assert_eq!(renewal_jitter(Duration::from_millis(5), 42), Duration::ZERO);
        assert!(renewal_jitter(Duration::MAX, u64::MAX) <= MAX_JITTER);
    }

    #[test]
    fn jitter_is_deterministic() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(renewal_jitter(mins(30), seed), renewal_jitter(mins(30), seed));
        }
        // Pinned so an accidental change of the mixing function is noticed:
        // it would move every object's renewal time after an upgrade.
        assert_eq!(renewal_jitter(mins(30), 42), Duration::from_millis(88_988));
        assert_ne!(renewal_jitter(mins(30), 1), renewal_jitter(mins(30), 2));
    }

    #[test]
    fn jitter_spreads_evenly() {
        let window = MAX_JITTER.as_millis();
        let mut buckets = [0u32; 10];
        for seed in 0..10_000u64 {
            let j = renewal_jitter(mins(60), seed).as_millis();
            let bucket = usize::try_from(j * 10 / (window + 1)).unwrap();
            buckets[bucket] += 1;
        }
        for count in buckets {
            assert!((800..=1_200).contains(&count), "{buckets:?}");
        }
    }

    // ---- backoff ----

    #[test]
    fn backoff_grows_and_caps() {
        let almost_one = 1.0 - f64::EPSILON;
        let ceilings: Vec<u64> = (1..=9)
            .map(|n| failure_backoff(n, almost_one).as_secs_f64().round() as u64)
            .collect();
        assert_eq!(ceilings, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(failure_backoff(0, almost_one).as_secs_f64().round() as u64, 5);
        assert_eq!(failure_backoff(u32::MAX, 0.5), Duration::from_secs(150));
        assert_eq!(failure_backoff(3, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn backoff_has_floor_and_handles_odd_randoms() {
        assert_eq!(failure_backoff(1, 0.0), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(1, 0.1), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, f64::NAN), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, -3.0), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, 7.0), BACKOFF_CAP);
        assert_eq!(failure_backoff(8, f64::INFINITY), BACKOFF_CAP);
    }

    #[test]
    fn retry_time_respects_expiry() {
        let now = ts(MON_1700);
        // No expiry known: plain backoff.
        assert_eq!(retry_time(now, 8, 0.5, None), ts("2026-11-23T17:02:30Z"));
        // Expiry far away: plain backoff.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T18:00:00Z"))),
            ts("2026-11-23T17:02:30Z")
        );
        // Expiry soon: retry no later than 30 s before it.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:01:00Z"))),
            ts("2026-11-23T17:00:30Z")
        );
        // Inside the margin but not expired: retry within the base backoff.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:00:20Z"))),
            ts("2026-11-23T17:00:05Z")
        );
        // Expiring before the base backoff is over: the retry is at the expiry, not after it.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:00:02Z"))),
            ts("2026-11-23T17:00:02Z")
        );
        // Already expired: plain backoff again.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T16:00:00Z"))),
            ts("2026-11-23T17:02:30Z")
        );
        assert_eq!(retry_time(Timestamp::MAX, 8, 0.5, None), Timestamp::MAX);
    }

    // ---- formatting ----

    #[test]
    fn format_duration_is_compact_go_syntax() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(4_800), "1h20m"),
            (Duration::from_secs(4_805), "1h20m5s"),
            (Duration::from_secs(3_605), "1h5s"),
            (Duration::from_secs(7 * 86_400), "168h"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(3), "3us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(61_000_000_001), "1m1.000000001s"),
        ] {
            assert_eq!(format_duration(d), s);
            let parsed: kube::core::Duration = s.parse().unwrap();
            assert_eq!(Duration::from(parsed), d, "{s} must parse back as a Go duration");
        }
        assert!(!format_duration(Duration::MAX).is_empty());
    }
}
