//! A crate that denies missing docs still compiles the generated clients; the one mistake
//! here is the undocumented trait itself.
#![deny(missing_docs)]

#[fdrpc::service]
pub trait Broker {
    async fn open(&self, path: String) -> i32;
}

fn main() {}
