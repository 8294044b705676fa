//! In-memory journal (written by the store work).
