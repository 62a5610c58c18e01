//! The BPF namespace model: pure logic, no syscalls.

mod kind;

pub use kind::ObjectKind;
