//! Output templates for `sluice consume --format '...'`, as kcat's `-f`: the template is
//! parsed once into pieces, then written per record without allocating.
//!
//! | Code | Prints |
//! |------|--------|
//! | `%t` | topic |
//! | `%p` | partition |
//! | `%o` | offset |
//! | `%T` | timestamp, milliseconds since the epoch |
//! | `%d` | timestamp, RFC 3339 (UTC) |
//! | `%k` | key (nothing for a null key, or `NULL` with `-Z`) |
//! | `%K` | key length in bytes (`-1` for null) |
//! | `%v`, `%s` | value (`%s` is kcat's name) |
//! | `%S` | value length in bytes (`-1` for null) |
//! | `%h` | headers as `k=v,k2=v2` |
//! | `%%` | `%` |
//!
//! `\n`, `\t`, `\r` and `\\` are escapes. As with kcat, nothing is added after the
//! template: end it with `\n` for one record per line.

use std::io::Write;

use sluice_client::ConsumerRecord;

use crate::util;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    TimestampMs,
    Time,
    Key,
    KeyLength,
    Value,
    ValueLength,
    Headers,
}

/// A parsed output template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; an unknown `%` code or a lone `%` at the end is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::TimestampMs,
                    Some('d') => Piece::Time,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeyLength,
                    Some('v' | 's') => Piece::Value,
                    Some('S') => Piece::ValueLength,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => {
                        return Err(format!(
                        "%{other} is not a format code (use %t %p %o %T %d %k %K %v %s %S %h %%)"
                    ))
                    }
                    None => return Err("the format ends with a lone %".into()),
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        Some(other) => {
                            literal.push(b'\\');
                            other
                        }
                        None => '\\',
                    };
                    let mut buf = [0; 4];
                    literal.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
                other => {
                    let mut buf = [0; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// Writes `record` as the template says; `null` stands for a null key or value.
    pub fn write(
        &self,
        out: &mut impl Write,
        record: &ConsumerRecord,
        null: &[u8],
    ) -> std::io::Result<()> {
        let length = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.write_all(bytes)?,
                Piece::Topic => out.write_all(record.topic.as_bytes())?,
                Piece::Partition => write!(out, "{}", record.partition)?,
                Piece::Offset => write!(out, "{}", record.offset)?,
                Piece::TimestampMs => write!(out, "{}", record.timestamp)?,
                Piece::Time => out.write_all(util::format_time(record.timestamp).as_bytes())?,
                Piece::Key => out.write_all(record.key.as_deref().unwrap_or(null))?,
                Piece::KeyLength => write!(out, "{}", length(record.key.as_deref()))?,
                Piece::Value => out.write_all(record.value.as_deref().unwrap_or(null))?,
                Piece::ValueLength => write!(out, "{}", length(record.value.as_deref()))?,
                Piece::Headers => {
                    for (i, header) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(header.key.as_bytes())?;
                        out.write_all(b"=")?;
                        out.write_all(header.value.as_deref().unwrap_or(null))?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_client::consumer::TimestampType;
    use sluice_client::Header;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 42,
            timestamp: 1_714_564_800_250,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: vec![
                Header {
                    key: "a".into(),
                    value: Some(Bytes::from_static(b"1")),
                },
                Header {
                    key: "b".into(),
                    value: None,
                },
            ],
        }
    }

    fn render(template: &str, record: &ConsumerRecord, null: &[u8]) -> String {
        let mut out = Vec::new();
        Template::parse(template)
            .unwrap()
            .write(&mut out, record, null)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn codes_and_escapes() {
        let r = record(Some(b"k1"), Some(b"hello"));
        assert_eq!(
            render("%t %p %o %T %k %v\\n", &r, b""),
            "orders 2 42 1714564800250 k1 hello\n"
        );
        assert_eq!(
            render("%d\\t%K/%S %s 100%%", &r, b""),
            "2024-05-01T12:00:00.250Z\t2/5 hello 100%"
        );
        assert_eq!(render("[%h]", &r, b"NULL"), "[a=1,b=NULL]");
        assert_eq!(render("ünï \\x", &r, b""), "ünï \\x");
    }

    #[test]
    fn nulls_show_as_asked_and_lengths_are_minus_one() {
        let r = record(None, None);
        assert_eq!(render("%k|%v|%K|%S", &r, b""), "||-1|-1");
        assert_eq!(render("%k|%v", &r, b"NULL"), "NULL|NULL");
    }

    #[test]
    fn bad_codes_are_errors() {
        assert!(Template::parse("%x").unwrap_err().contains("%x"));
        assert!(Template::parse("value %").is_err());
    }
}
