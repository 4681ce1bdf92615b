//! Unit tests of template reading and writing.

use super::*;

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn to_char(t: &str, template: &str) -> String {
    Template::parse(template).unwrap().format(&at(t), None)
}

#[test]
fn patterns_write_as_postgres_writes_them() {
    let t = "2024-03-05 14:07:09.123456";
    assert_eq!(to_char(t, "YYYY-MM-DD HH24:MI:SS"), "2024-03-05 14:07:09");
    assert_eq!(to_char(t, "HH12:MI AM"), "02:07 PM");
    assert_eq!(to_char(t, "Month DD"), "March     05");
    assert_eq!(to_char(t, "FMMonth FMDDth, YYYY"), "March 5th, 2024");
    assert_eq!(to_char(t, "Dy Mon MS US"), "Tue Mar 123 123456");
    assert_eq!(to_char(t, "\"Quarter\" Q, DDD"), "Quarter 1, 065");
    assert_eq!(to_char(t, "TMMonth|DDSP|TZ|OF"), "March|05||+00");
}

#[test]
fn templates_read_text() {
    let read = |text: &str, template: &str| {
        Template::parse(template)
            .unwrap()
            .read(text)
            .unwrap()
            .local
            .to_string()
    };
    assert_eq!(
        read("2024-03-05 14:07", "YYYY-MM-DD HH24:MI"),
        "2024-03-05 14:07:00"
    );
    assert_eq!(read("20240305", "YYYYMMDD"), "2024-03-05 00:00:00");
    assert_eq!(
        read("05 Mar 2024 2:07 pm", "DD Mon YYYY HH12:MI AM"),
        "2024-03-05 14:07:00"
    );
    assert_eq!(
        read("12:05:10.5", "HH24:MI:SS.MS")
            .split(' ')
            .nth(1)
            .unwrap(),
        "12:05:10.500"
    );
    assert!(
        Template::parse("YYYY-MM-DD")
            .unwrap()
            .read("2024-13-01")
            .is_err()
    );
}
