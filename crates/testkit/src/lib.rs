//! Test doubles for rein. Everything here is deterministic and in-process,
//! so loops are tested in milliseconds without a network or a real model.

pub mod conformance;
pub mod journal;
