//! Write meshhost processors in Rust.
//!
//! A processor is a struct that implements [`Processor`], exported with one line:
//!
//! ```ignore
//! use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};
//!
//! struct Identity;
//!
//! impl Processor for Identity {
//!     fn init(_config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
//!         let schema = inputs[0].schema.clone();
//!         Ok((Identity, vec![OutputPort { name: "out".into(), schema }]))
//!     }
//!     fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
//!         for i in 0..batch.len() as u32 {
//!             out.pass(0, i); // the record as it came, without copying it
//!         }
//!     }
//! }
//!
//! meshhost_sdk::export!(Identity);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the `.wasm` is the component.
//! [`avro`] (the `meshhost-avro` crate, re-exported) reads and writes the Avro datums that
//! records carry, field by field.

pub use meshhost_avro as avro;
pub mod batch;
mod guest;
pub mod options;
pub mod state;

pub use batch::{Batch, Header, Record, RecordRef};
pub use bindings::meshhost::processor::log::{log, Level};
pub use bindings::meshhost::processor::types::{ConfigError, InputPort, OutputPort, ValueFormat};
pub use guest::{port_schema, Emitted, Output, Processor};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "meshhost_sdk::bindings",
    });
}

#[doc(hidden)]
pub use guest::{init as __init, process as __process};

/// Export a [`Processor`] implementation as the component's `processor` interface.
#[macro_export]
macro_rules! export {
    ($processor:ty) => {
        const _: () = {
            struct MeshhostGuest;

            impl $crate::bindings::exports::meshhost::processor::processor::Guest for MeshhostGuest {
                fn init(
                    config: ::std::string::String,
                    inputs: ::std::vec::Vec<$crate::InputPort>,
                ) -> ::std::result::Result<
                    $crate::bindings::meshhost::processor::types::InitResult,
                    ::std::vec::Vec<$crate::ConfigError>,
                > {
                    $crate::__init::<$processor>(config, inputs)
                }

                fn process(
                    input: u32,
                    batch: $crate::bindings::meshhost::processor::types::Batch,
                ) -> $crate::bindings::meshhost::processor::types::BatchResult {
                    $crate::__process::<$processor>(input, batch)
                }
            }

    $crate::bindings::__export_plugin!(MeshhostGuest with_types_in $crate::bindings);
        };
    };
}
