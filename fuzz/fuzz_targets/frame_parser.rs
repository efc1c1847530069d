//! THeader frames and the compact message header: any bytes, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(len)) = fdrpc::transport::frame::frame_len(data, 1 << 20) else {
        return;
    };
    let Some(bytes) = data.get(..len) else { return };
    let Ok(frame) = fdrpc::transport::frame::parse_frame(bytes) else {
        return;
    };
    let _ = frame.headers().count();
    let _ = frame.header("fdrpc-stream");
    let mut dec = fdrpc::codec::Decoder::new(frame.payload, fdrpc::FdTable::empty());
    if dec.read_message_header().is_ok() {
        // Whatever struct follows: skipping it must be bounded.
        let _ = dec.skip(fdrpc::codec::TType::Struct);
    }
});
