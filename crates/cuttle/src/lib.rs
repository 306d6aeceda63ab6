//! What of the `cuttle` binary other crates use in-process: the host's
//! instances, routing, control plane and hosted workers (`cuttle host`),
//! so that a test suite can serve its instance through a host as `cuttle
//! host` does. The binary (`main.rs`) uses these same modules; its own
//! `host` module adds the command's arguments and the control-plane client.

pub mod host {
    pub mod archive;
    pub mod control;
    pub mod hibernation;
    pub mod instances;
    pub mod names;
    pub mod polling;
    pub mod routing;
    pub mod workers;
}
