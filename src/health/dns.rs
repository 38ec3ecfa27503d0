//! `dns` probe: one query over UDP to a server, checking the response code
//! and optionally that one answer record equals an expected value.
//!
//! The answer comparison is on the record's presentation text: addresses
//! are compared as addresses (`2001:db8::1` equals `2001:0db8::1`), names
//! without regard to case or the trailing dot, TXT exactly.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use super::Probed;
use crate::model::{DnsRcode, DnsType};

/// Largest UDP reply we read.
const MAX_REPLY: usize = 4096;

/// A prepared DNS check.
#[derive(Debug)]
pub struct DnsTarget {
    server: SocketAddr,
    /// The query name, or why hickory rejects it.
    name: Result<Name, String>,
    rtype: RecordType,
    expect_rcode: ResponseCode,
    expect_answer: Option<String>,
}

impl DnsTarget {
    pub fn new(
        server: SocketAddr,
        qname: &str,
        qtype: DnsType,
        expect_rcode: DnsRcode,
        expect_answer: Option<String>,
    ) -> DnsTarget {
        let fqdn = if qname.ends_with('.') {
            qname.to_string()
        } else {
            format!("{qname}.")
        };
        DnsTarget {
            server,
            name: Name::from_ascii(&fqdn).map_err(|e| format!("bad query name {qname:?}: {e}")),
            rtype: RecordType::from(qtype),
            expect_rcode: match expect_rcode {
                DnsRcode::NoError => ResponseCode::NoError,
                DnsRcode::NxDomain => ResponseCode::NXDomain,
                DnsRcode::ServFail => ResponseCode::ServFail,
                DnsRcode::Refused => ResponseCode::Refused,
            },
            expect_answer,
        }
    }

    /// One query. Success detail: `NOERROR, 2 answers`.
    pub async fn probe(&self) -> Probed {
        let name = self.name.clone()?;
        let mut query = Message::query();
        query.add_query(Query::query(name, self.rtype));
        query.metadata.recursion_desired = true;
        let id = query.metadata.id;
        let wire = query.to_vec().map_err(|e| format!("encoding query: {e}"))?;

        let bind: SocketAddr = if self.server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("udp socket: {e}"))?;
        sock.connect(self.server)
            .await
            .map_err(|e| format!("udp connect {}: {e}", self.server))?;
        sock.send(&wire).await.map_err(|e| udp_error("send", &e))?;

        let mut buf = vec![0u8; MAX_REPLY];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| udp_error("receive", &e))?;
            let reply = match Message::from_vec(&buf[..n]) {
                Ok(m) => m,
                Err(e) => return Err(format!("malformed reply: {e}")),
            };
            // Connected socket: only the server can answer; still ignore
            // stray replies to earlier queries.
            if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
                continue;
            }
            return self.evaluate(&reply);
        }
    }

    /// Judges a reply (pure).
    fn evaluate(&self, reply: &Message) -> Probed {
        let rcode = reply.metadata.response_code;
        if rcode != self.expect_rcode {
            return Err(format!(
                "rcode {} (expected {})",
                rcode_name(rcode),
                rcode_name(self.expect_rcode)
            ));
        }
        let tc = if reply.metadata.truncation {
            " (truncated)"
        } else {
            ""
        };
        let n = reply.answers.len();
        let Some(want) = &self.expect_answer else {
            return Ok(format!("{}, {n} answer(s){tc}", rcode_name(rcode)));
        };
        let got: Vec<String> = reply
            .answers
            .iter()
            .filter(|r| r.record_type() == self.rtype)
            .filter_map(|r| rdata_text(&r.data))
            .collect();
        if got.iter().any(|g| answer_matches(&self.rtype, want, g)) {
            Ok(format!("{}, answer {want}{tc}", rcode_name(rcode)))
        } else if got.is_empty() {
            Err(format!("no {} answer (expected {want}){tc}", self.rtype))
        } else {
            Err(format!(
                "no answer equals {want:?} (got {}){tc}",
                got.join(", ")
            ))
        }
    }
}

fn rcode_name(r: ResponseCode) -> String {
    match u16::from(r) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn udp_error(what: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        "port unreachable (no DNS server)".into()
    } else {
        format!("{what}: {e}")
    }
}

/// Presentation text of rdata; `None` for data without one (OPT).
fn rdata_text(r: &RData) -> Option<String> {
    let mut s = String::new();
    write!(s, "{r}").ok()?;
    Some(s)
}

fn answer_matches(rtype: &RecordType, want: &str, got: &str) -> bool {
    match rtype {
        RecordType::A | RecordType::AAAA => match (want.parse::<IpAddr>(), got.parse::<IpAddr>()) {
            (Ok(w), Ok(g)) => w == g,
            _ => false,
        },
        RecordType::TXT => want == got,
        _ => want
            .trim_end_matches('.')
            .eq_ignore_ascii_case(got.trim_end_matches('.')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::Record;

    use crate::health::Target;
    use crate::model::Probe;

    /// A tiny UDP DNS responder: `up.example.` A 192.0.2.10,
    /// `txt.example.` TXT "v=1", anything else NXDOMAIN. `silent` drops
    /// every query; `wrong_id` answers with a different id first.
    async fn responder(silent: bool, wrong_id: bool) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                if silent {
                    continue;
                }
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.add_queries(q.queries.iter().cloned());
                let query = &q.queries[0];
                let name = query.name().to_ascii();
                match (name.as_str(), query.query_type()) {
                    ("up.example.", RecordType::A) => {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
                        ));
                    }
                    ("txt.example.", RecordType::TXT) => {
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::TXT(TXT::new(vec!["v=1".into()])),
                        ));
                    }
                    _ => r.metadata.response_code = ResponseCode::NXDomain,
                }
                if wrong_id {
                    let mut stray = r.clone();
                    stray.metadata.id = q.metadata.id.wrapping_add(1);
                    stray.metadata.response_code = ResponseCode::ServFail;
                    let _ = sock.send_to(&stray.to_vec().unwrap(), from).await;
                }
                let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
            }
        });
        addr
    }

    fn dns(
        server: SocketAddr,
        qname: &str,
        qtype: DnsType,
        rcode: DnsRcode,
        answer: Option<&str>,
    ) -> Target {
        Target::new(&Probe::Dns {
            server,
            qname: qname.into(),
            qtype,
            expect_rcode: rcode,
            expect_answer: answer.map(str::to_string),
        })
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn answers_and_rcodes() {
        let server = responder(false, false).await;
        let out = dns(server, "up.example", DnsType::A, DnsRcode::NoError, None)
            .run(T)
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "NOERROR, 1 answer(s)");

        let out = dns(
            server,
            "up.example.",
            DnsType::A,
            DnsRcode::NoError,
            Some("192.0.2.10"),
        )
        .run(T)
        .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "NOERROR, answer 192.0.2.10");

        let out = dns(
            server,
            "up.example",
            DnsType::A,
            DnsRcode::NoError,
            Some("192.0.2.99"),
        )
        .run(T)
        .await;
        assert!(!out.ok);
        assert_eq!(
            out.detail,
            "no answer equals \"192.0.2.99\" (got 192.0.2.10)"
        );

        let out = dns(
            server,
            "txt.example",
            DnsType::Txt,
            DnsRcode::NoError,
            Some("v=1"),
        )
        .run(T)
        .await;
        assert!(out.ok, "{out:?}");

        let out = dns(server, "gone.example", DnsType::A, DnsRcode::NoError, None)
            .run(T)
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "rcode NXDOMAIN (expected NOERROR)");

        let out = dns(server, "gone.example", DnsType::A, DnsRcode::NxDomain, None)
            .run(T)
            .await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn stray_reply_with_other_id_is_ignored() {
        let server = responder(false, true).await;
        let out = dns(
            server,
            "up.example",
            DnsType::A,
            DnsRcode::NoError,
            Some("192.0.2.10"),
        )
        .run(T)
        .await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let server = responder(true, false).await;
        let out = dns(server, "up.example", DnsType::A, DnsRcode::NoError, None)
            .run(Duration::from_millis(300))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "timeout after 300ms");
    }

    #[tokio::test]
    async fn no_server_is_a_failure() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let server: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
        let out = dns(server, "up.example", DnsType::A, DnsRcode::NoError, None)
            .run(Duration::from_millis(500))
            .await;
        assert!(!out.ok);
        // Linux reports the ICMP port unreachable on the connected socket.
        assert!(
            out.detail == "port unreachable (no DNS server)" || out.detail.starts_with("timeout"),
            "{}",
            out.detail
        );
    }

    #[tokio::test]
    async fn garbage_reply_is_a_failure() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            if let Ok((_, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(b"\x01\x02garbage", from).await;
            }
        });
        let out = dns(server, "up.example", DnsType::A, DnsRcode::NoError, None)
            .run(T)
            .await;
        assert!(!out.ok);
        assert!(out.detail.starts_with("malformed reply"), "{}", out.detail);
    }

    #[test]
    fn answer_comparison() {
        assert!(answer_matches(
            &RecordType::AAAA,
            "2001:db8::1",
            "2001:0db8:0::1"
        ));
        assert!(answer_matches(
            &RecordType::CNAME,
            "WWW.example.net",
            "www.example.net."
        ));
        assert!(!answer_matches(&RecordType::TXT, "V=1", "v=1"));
        assert!(!answer_matches(&RecordType::A, "not-an-ip", "192.0.2.1"));
    }
}
