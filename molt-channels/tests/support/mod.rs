pub mod gateway;
pub mod telegram;
