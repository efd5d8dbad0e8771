//! Updates over MQTT: the wire format and signatures (shared with `berth fleet`), and the
//! agent's side: transfer, journal and apply.

pub mod sign;
pub mod wire;
