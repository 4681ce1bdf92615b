//! The run-time parameters deltagate knows: each one's PostgreSQL spelling, default, whether
//! a client may change it, and its description (what `SHOW ALL` and `pg_settings` list), and
//! the parameters reported to the client in `ParameterStatus`.
//!
//! A parameter not listed here is unknown (`SET` fails with 42704) unless its name is
//! qualified. Used by [`Settings`](super::Settings) only.

/// Parameters reported to the client in `ParameterStatus` at startup and whenever they change.
pub(super) const REPORTED_PARAMETERS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// One known parameter: canonical name, default, whether clients may change it, description.
pub(super) struct Definition {
    pub(super) name: &'static str,
    pub(super) default: &'static str,
    pub(super) settable: bool,
    pub(super) description: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
) -> Definition {
    Definition {
        name,
        default,
        settable,
        description,
    }
}

pub(super) const DEFINITIONS: &[Definition] = &[
    def(
        "application_name",
        "",
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    def(
        "bytea_output",
        "hex",
        true,
        "Sets the output format for bytea.",
    ),
    def(
        "client_encoding",
        "UTF8",
        true,
        "Sets the client's character set encoding.",
    ),
    def(
        "client_min_messages",
        "notice",
        true,
        "Sets the message levels that are sent to the client.",
    ),
    def(
        "DateStyle",
        "ISO, MDY",
        true,
        "Sets the display format for date and time values.",
    ),
    def(
        "deltagate.historian_duplicates",
        "skip",
        true,
        "What an INSERT or COPY into an Ignition historian data table does with a row whose (tagid, t_stamp) is already stored: skip it (the default, so re-sent batches succeed) or error (23505, as PostgreSQL).",
    ),
    def(
        "default_transaction_isolation",
        "read committed",
        true,
        "Sets the transaction isolation level of each new transaction.",
    ),
    def(
        "default_transaction_read_only",
        "off",
        true,
        "Sets the default read-only status of new transactions.",
    ),
    def(
        "enable_indexscan",
        "on",
        true,
        "Enables key seeks: queries for the first or last rows of primary-key values within a range, ordered by the next key column with a LIMIT, read only the pages that can hold them instead of planning a scan.",
    ),
    def(
        "extra_float_digits",
        "1",
        true,
        "Sets the number of digits displayed for floating-point values.",
    ),
    def(
        "idle_in_transaction_session_timeout",
        "0",
        true,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    def(
        "in_hot_standby",
        "off",
        false,
        "Shows whether hot standby is currently active.",
    ),
    def(
        "integer_datetimes",
        "on",
        false,
        "Shows whether datetimes are integer based.",
    ),
    def(
        "IntervalStyle",
        "postgres",
        true,
        "Sets the display format for interval values.",
    ),
    def(
        "is_superuser",
        "on",
        false,
        "Shows whether the current user is a superuser.",
    ),
    def(
        "lc_collate",
        "C",
        false,
        "Shows the collation order locale.",
    ),
    def(
        "lc_ctype",
        "C",
        false,
        "Shows the character classification and case conversion locale.",
    ),
    def(
        "lc_messages",
        "C",
        true,
        "Sets the language in which messages are displayed.",
    ),
    def(
        "lc_monetary",
        "C",
        true,
        "Sets the locale for formatting monetary amounts.",
    ),
    def(
        "lc_numeric",
        "C",
        true,
        "Sets the locale for formatting numbers.",
    ),
    def(
        "lc_time",
        "C",
        true,
        "Sets the locale for formatting date and time values.",
    ),
    def(
        "lock_timeout",
        "0",
        true,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    def(
        "max_connections",
        "100",
        false,
        "Sets the maximum number of concurrent connections.",
    ),
    def(
        "max_identifier_length",
        "63",
        false,
        "Shows the maximum identifier length.",
    ),
    def("row_security", "on", true, "Enable row security."),
    def(
        "search_path",
        "\"$user\", public",
        true,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    def(
        "server_encoding",
        "UTF8",
        false,
        "Shows the server (database) character set encoding.",
    ),
    def("server_version", "16.6", false, "Shows the server version."),
    def(
        "server_version_num",
        "160006",
        false,
        "Shows the server version as an integer.",
    ),
    def(
        "session_authorization",
        "",
        false,
        "Sets the session user name.",
    ),
    def(
        "standard_conforming_strings",
        "on",
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    def(
        "statement_timeout",
        "0",
        true,
        "Sets the maximum allowed duration of any statement.",
    ),
    def(
        "synchronous_commit",
        "on",
        true,
        "Sets the current transaction's synchronization level.",
    ),
    def(
        "TimeZone",
        "UTC",
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    def(
        "transaction_isolation",
        "read committed",
        true,
        "Sets the current transaction's isolation level.",
    ),
    def(
        "transaction_read_only",
        "off",
        true,
        "Sets the current transaction's read-only status.",
    ),
    def(
        "xmloption",
        "content",
        true,
        "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments.",
    ),
];

/// The parameter of this name, whatever its case.
pub(super) fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}
