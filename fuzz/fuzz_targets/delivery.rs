#![no_main]

use fastpix_nats_bridge_fuzz::{Input, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| check(&input));
