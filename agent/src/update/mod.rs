//! Updates over MQTT: the wire format and signatures (shared with `berth fleet`), and the
//! agent's side: transfer, journal, apply, and the broker session.

pub mod apply;
pub mod clock;
pub mod journal;
pub mod manager;
pub mod session;
pub mod sign;
pub mod transfer;
pub mod wire;
