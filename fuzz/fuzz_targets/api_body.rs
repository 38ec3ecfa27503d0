//! The API's JSON request bodies (drain, undrain, disable, enable): serde
//! into the request DTOs, then the checked values (reason and who texts,
//! drain mode, drain duration). No panic; every rejection is a 400 or 422
//! naming what is wrong.
#![no_main]

use anypop::api::dto::{
    drain_duration, mode, parse_body, text, DisableRequest, DrainRequest, EnableRequest,
    UndrainRequest,
};
use anypop::api::error::ApiError;
use libfuzzer_sys::fuzz_target;

fn rejected(e: ApiError) {
    let status = e.status.as_u16();
    assert!(status == 400 || status == 422, "unexpected status: {e:?}");
    assert!(!e.message.is_empty(), "an error without a message");
    if status == 422 {
        assert!(e.field.is_some(), "a 422 naming no field: {e:?}");
    }
}

fn check<T>(r: Result<T, ApiError>) -> Option<T> {
    r.map_err(rejected).ok()
}

fuzz_target!(|data: &[u8]| {
    if let Some(b) = check(parse_body::<DrainRequest>(data)) {
        check(text("reason", b.reason, "drained"));
        check(text("who", b.who, "api"));
        check(mode(b.mode.as_deref()));
        check(drain_duration(b.duration.as_deref()));
    }
    if let Some(b) = check(parse_body::<UndrainRequest>(data)) {
        check(mode(b.mode.as_deref()));
        check(text("who", b.who, "api"));
    }
    if let Some(b) = check(parse_body::<DisableRequest>(data)) {
        check(text("reason", b.reason, "disabled"));
        check(text("who", b.who, "api"));
    }
    if let Some(b) = check(parse_body::<EnableRequest>(data)) {
        check(text("who", b.who, "api"));
    }
});
