//! bakery-cli: what bakery-agent, bakery-collector and bakery-top do alike at their edge, so that
//! a user meets one convention: on/off variables ([`EnvBool`]), logs ([`init_logs`]) and errors
//! printed with their causes ([`error_chain`]), and progress on long work ([`Progress`]).
#![forbid(unsafe_code)]

mod errors;
mod logs;
mod progress;
mod switch;

pub use errors::error_chain;
pub use logs::init_logs;
pub use progress::Progress;
pub use switch::{EnvBool, on_off};
