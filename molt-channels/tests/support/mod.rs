pub mod discord;
pub mod gateway;
pub mod telegram;
