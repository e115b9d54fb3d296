//! The SignalR hub protocol codec (work in progress).
#![forbid(unsafe_code)]
