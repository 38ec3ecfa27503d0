//! hickory-server's request path for everything but the UDP fast path.
//!
//! [`GeneralHandler`] implements [`hickory_server::server::RequestHandler`]
//! over the general answer path ([`super::answer::answer_message`]):
//! hickory-server decodes the request ([`Request`], its `MessageRequest`
//! with EDNS), the handler answers it from the current [`State`] and hands a
//! hickory-server `MessageResponse` to the response handler, which encodes
//! it. The TCP listener ([`super::server`]) feeds every framed message
//! through [`Request::from_bytes`] and this handler; bytes hickory-server
//! cannot decode get FORMERR from [`super::answer::respond`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageRequest, MessageResponse, MessageResponseBuilder};
use tokio::sync::watch;

use super::answer::{answer_message, count_steered, respond, Transport};
use super::state::State;
use super::stats::DnsStats;

/// Answers decoded requests from the latest [`State`].
#[derive(Clone)]
pub struct GeneralHandler {
    states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
}

impl GeneralHandler {
    pub fn new(states: watch::Receiver<Arc<State>>, stats: Arc<DnsStats>) -> GeneralHandler {
        GeneralHandler { states, stats }
    }

    /// Decodes `raw` with hickory-server and answers it through
    /// [`RequestHandler::handle_request`] (TCP: no size limit).
    pub async fn answer_bytes(&self, raw: Vec<u8>, src: SocketAddr) -> Outcome {
        if question_has_pointer(&raw) {
            // hickory-server echoes the question bytes as received; a
            // compression pointer into the header would then name something
            // else in the response, whose header differs. The general path
            // re-encodes the question it decoded.
            let state = self.states.borrow().clone();
            let ip = src.ip().to_canonical();
            return match respond(&state, &self.stats, &raw, ip, Transport::Tcp) {
                Some(b) => Outcome::Answer(b),
                None => Outcome::Drop,
            };
        }
        let Ok(request) = Request::from_bytes(raw, src, Protocol::Tcp) else {
            return Outcome::Undecodable;
        };
        if request.metadata.message_type != MessageType::Query {
            self.stats.dropped.fetch_add(1, Relaxed);
            return Outcome::Drop;
        }
        let out = Capture::default();
        self.handle_request::<_, TokioTime>(&request, out.clone())
            .await;
        let bytes = out.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match bytes {
            Some(b) => Outcome::Answer(b),
            None => Outcome::Drop,
        }
    }
}

/// Whether a name in the question section of `msg` uses a compression
/// pointer (rare in queries). Stops at the end of the bytes.
pub(crate) fn question_has_pointer(msg: &[u8]) -> bool {
    let Some(count) = msg.get(4..6).map(|c| u16::from_be_bytes([c[0], c[1]])) else {
        return false;
    };
    let mut pos = 12;
    for _ in 0..count {
        loop {
            let Some(&len) = msg.get(pos) else {
                return false;
            };
            if len & 0xc0 != 0 {
                return len & 0xc0 == 0xc0;
            }
            pos += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        pos += 4;
    }
    false
}

/// What [`GeneralHandler::answer_bytes`] made of a message.
#[derive(Debug)]
pub enum Outcome {
    Answer(Vec<u8>),
    /// Not a query (or nothing could be encoded): send nothing.
    Drop,
    /// hickory-server could not decode it.
    Undecodable,
}

/// The request as the hickory-proto message the general path answers.
fn message_of(req: &MessageRequest) -> Message {
    let mut m = Message::new(
        req.metadata.id,
        req.metadata.message_type,
        req.metadata.op_code,
    );
    m.metadata = req.metadata;
    m.queries = req
        .queries
        .queries()
        .iter()
        .map(|q| q.original().clone())
        .collect();
    m.answers = req.answers.clone();
    m.authorities = req.authorities.clone();
    m.additionals = req.additionals.clone();
    m.edns = req.edns.clone();
    m
}

#[async_trait::async_trait]
impl RequestHandler for GeneralHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let state = self.states.borrow().clone();
        let msg = message_of(request);
        let (resp, resolved) =
            answer_message(&state, &msg, request.src().ip().to_canonical(), None);
        if let Some(r) = &resolved {
            count_steered(&state, &self.stats, r);
        }
        self.stats.count_rcode(resp.metadata.response_code);
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = resp.edns.as_ref() {
            builder.edns(e);
        }
        let response = builder.build(
            resp.metadata,
            resp.answers.iter(),
            resp.authorities.iter(),
            None::<&Record>,
            resp.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                let mut metadata = Metadata::new(
                    request.metadata.id,
                    MessageType::Response,
                    request.metadata.op_code,
                );
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A response handler that keeps the encoded response (the TCP loop frames
/// and writes it itself, so it can enforce its own connection limits).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}
