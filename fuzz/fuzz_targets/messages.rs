//! Arbitrary bytes through deltagate's decoding of frontend messages (see
//! `deltagate::server::fuzzing::messages`): none of it may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    deltagate::server::fuzzing::messages(data);
});
