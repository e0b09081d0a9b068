//! The hub daemon's read side: the read routes ([`read`]), the fleet snapshot
//! ([`snapshot`]), the dashboard and its event stream ([`events`]), and a
//! bounded query parser ([`query`]). The route list and services are in
//! [`super::hub_api`].

pub mod events;
pub mod query;
pub mod read;
pub mod snapshot;
