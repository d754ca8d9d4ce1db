pub mod discord;
pub mod gateway;
pub mod slack;
pub mod telegram;
