//! Fuzz target `udp_datagram`: see `fuzz/targets.rs`.
#![no_main]
#![allow(dead_code)]

include!("../targets.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| udp_datagram(data));
