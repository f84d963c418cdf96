//! meshhost's integration tests: the real `meshhost` binary against the real broker started by
//! `scripts/broker.sh` (see `support::broker`). One test binary, to link once.

mod catalog;
mod cdc;
mod data_mesh;
mod faults;
mod graph;
mod guest_state;
mod join;
mod languages;
mod movies;
mod observe;
mod pipeline;
mod postgres_sink;
mod registry;
mod reset;
mod scaffold;
mod scale;
mod schema_registry;
mod support;
mod testkit;
mod union;
mod validate;
