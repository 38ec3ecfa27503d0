//! Framing: takes whole BGP messages off the front of the TCP byte stream,
//! after the RFC 4271 §6.1 header checks (marker, length bounds per type,
//! known type). A bad header is a [`Notification`] to send, never a panic.
//!
//! Must not look inside message bodies; that is [`mod@super::decode`]'s job.

use bytes::{Bytes, BytesMut};

use super::message::{
    err, Notification, HEADER_LEN, MAX_MESSAGE_LEN, MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_OPEN,
    MSG_ROUTE_REFRESH, MSG_UPDATE,
};

/// Takes one complete message off the front of `buf`, after the RFC 4271
/// §6.1 header checks. `Ok(None)`: more bytes needed.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, Notification> {
    if buf.len() < HEADER_LEN {
        // Check the marker early so a stream of garbage is rejected quickly.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(Notification::new(
                err::HEADER,
                err::CONNECTION_NOT_SYNCHRONIZED,
                [],
            ));
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(
            err::HEADER,
            err::CONNECTION_NOT_SYNCHRONIZED,
            [],
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let typ = buf[18];
    let bad_len = || {
        Notification::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            (len as u16).to_be_bytes(),
        )
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_len());
    }
    let ok = match typ {
        MSG_OPEN => len >= 29,
        MSG_UPDATE => len >= 23,
        MSG_NOTIFICATION => len >= 21,
        MSG_KEEPALIVE => len == 19,
        MSG_ROUTE_REFRESH => len == 23,
        _ => return Err(Notification::new(err::HEADER, err::BAD_MESSAGE_TYPE, [typ])),
    };
    if !ok {
        return Err(bad_len());
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::decode::decode;
    use super::super::encode::encode_keepalive;
    use super::super::message::Received;
    use super::*;

    pub(crate) fn frame_of(bytes: &[u8]) -> Result<Option<Bytes>, Notification> {
        let mut b = BytesMut::from(bytes);
        take_frame(&mut b)
    }

    pub(crate) fn header(len: u16, typ: u8) -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&len.to_be_bytes());
        v.push(typ);
        v
    }

    #[test]
    fn bad_marker_is_connection_not_synchronized() {
        let mut m = encode_keepalive();
        m[3] = 0;
        assert_eq!(
            frame_of(&m).unwrap_err().subcode,
            err::CONNECTION_NOT_SYNCHRONIZED
        );
        // Even before a full header arrived.
        assert_eq!(frame_of(&[0xff, 0x00]).unwrap_err().code, err::HEADER);
    }

    #[test]
    fn bad_lengths_and_types() {
        let e = frame_of(&header(18, MSG_KEEPALIVE)).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data.clone()), (1, 2, vec![0, 18]));
        let e = frame_of(&header(4097, MSG_UPDATE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(20, MSG_KEEPALIVE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(22, MSG_UPDATE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(19, 9)).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data.clone()), (1, 3, vec![9]));
        // Incomplete but plausible: wait for more.
        assert_eq!(frame_of(&header(30, MSG_UPDATE)).unwrap(), None);
    }

    #[test]
    fn frames_split_a_stream() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&encode_keepalive());
        b.extend_from_slice(&encode_keepalive()[..7]);
        assert!(take_frame(&mut b).unwrap().is_some());
        assert_eq!(take_frame(&mut b).unwrap(), None);
        b.extend_from_slice(&encode_keepalive()[7..]);
        assert_eq!(
            decode(&take_frame(&mut b).unwrap().unwrap()).unwrap(),
            Received::Keepalive
        );
        assert!(b.is_empty());
    }
}
