//! The AWS Secrets Manager / EventBridge schedule expressions, `rate(...)` and `cron(...)`:
//! parsing them with messages that say what to change, and when they fire (in UTC).

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

use super::duration::format_duration;

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::schedule::test_support::{MON_1700, mins, sched, ts};

    fn err(s: &str) -> String {
        match s.parse::<RotationSchedule>() {
            Ok(parsed) => panic!("{s} should be rejected, parsed as {parsed}"),
            Err(e) => e.to_string(),
        }
    }

    fn next(expr: &str, after: &str) -> Option<Timestamp> {
        sched(expr).next_after(ts(after))
    }

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
}
