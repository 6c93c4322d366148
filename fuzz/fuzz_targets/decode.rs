//! Fuzzes the inbound-frame decoder: any text must decode or yield a `DecodeError`, never panic, and a
//! decoded message must survive a round trip through its own serialization.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the WebSocket layer refuses non-UTF-8 text frames before the decoder
    };
    match shared::decode_client(text) {
        Ok(message) => {
            let again = shared::decode_client(&message.to_json()).expect("re-decodes");
            assert_eq!(again, message);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
