//! DNS from the tests' side: `dig` against an anypop DNS listener on
//! 127.0.0.1, and hand-built queries and answer parsing for the tests and
//! benches that send raw datagrams (no dig process per query).

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs `dig @127.0.0.1 -p port +norecurse +time=2 +tries=1 args…` and
/// returns its stdout.
pub fn dig(port: u16, args: &[&str]) -> String {
    dig_with(Command::new("dig"), "127.0.0.1", port, args)
}

/// Like [`dig`] against `server`, with `cmd` as the dig command (one run
/// inside a namespace, say).
pub fn dig_with(mut cmd: Command, server: &str, port: u16, args: &[&str]) -> String {
    let out = cmd
        .args([
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            "+norecurse",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer lines of `dig +short` output: trimmed, without blank lines and
/// `;` comments (e.g. `;; connection timed out`), in dig's order.
pub fn short_lines(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(String::from)
        .collect()
}

/// A DNS query message (no TCP length prefix) for `name` A with ID `id`,
/// recursion not desired.
pub fn query_a(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// [`query_a`] framed for DNS over TCP (two-byte length prefix).
pub fn tcp_query_a(id: u16, name: &str) -> Vec<u8> {
    let q = query_a(id, name);
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    m
}

/// Skips a (possibly compressed) name at `i`; the index after it.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

/// The A records in the answer section of a NOERROR response with ID
/// `id`, in message order; `None` for anything else (another ID, an error
/// rcode, a truncated (TC set: a rate limiter's slip has no answers) or
/// malformed message).
pub fn a_records(m: &[u8], id: u16) -> Option<Vec<Ipv4Addr>> {
    if m.len() < 12
        || u16::from_be_bytes([m[0], m[1]]) != id
        || m[2] & 0x02 != 0
        || m[3] & 0x0f != 0
    {
        return None;
    }
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i)?;
        let rr = m.get(i..i + 10)?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = m.get(i + 10..i + 10 + len)?;
        if rtype == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_an_a_question_without_recursion() {
        let q = query_a(0x1234, "www.example.net.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        assert_eq!(&q[12..16], &[3, b'w', b'w', b'w']);
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        let t = tcp_query_a(7, "a.b");
        assert_eq!(usize::from(u16::from_be_bytes([t[0], t[1]])), t.len() - 2);
    }

    #[test]
    fn answer_records_are_read_through_compression() {
        // The query, turned into an answer with two A records (the second
        // one's name compressed to the question) and one TXT record.
        let mut m = query_a(9, "all.example.net");
        m[2] = 0x84;
        m[7] = 3;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 203, 0, 113, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 10, 0, 2, 1, b'x']);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 192, 0, 2, 7]);
        assert_eq!(
            a_records(&m, 9),
            Some(vec![
                Ipv4Addr::new(203, 0, 113, 1),
                Ipv4Addr::new(192, 0, 2, 7)
            ])
        );
        assert_eq!(a_records(&m, 10), None, "another ID");
        assert_eq!(a_records(&m[..m.len() - 3], 9), None, "truncated");
        let mut nx = m.clone();
        nx[3] = 3;
        assert_eq!(a_records(&nx, 9), None, "NXDOMAIN");
        // A rate limiter's slip: TC set, the question only.
        let mut slip = query_a(9, "all.example.net");
        slip[2] = 0x86;
        assert_eq!(a_records(&slip, 9), None, "TC set");
    }
}
