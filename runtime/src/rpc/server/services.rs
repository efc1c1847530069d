//! [`ServiceSet`]: what one server serves on one socket: a service, or several, each under
//! its Thrift service name, as Apache Thrift's `TMultiplexedProtocol` calls them
//! (`Service:method`).

use super::service::Service;
use crate::idl::Idl;
use crate::rpc::method_name::split_service;

/// One service or several, served on one socket (see [`Server::serve`](super::Server::serve)).
/// Implemented for every [`Service`] and for tuples of up to eight of them:
///
/// ```no_run
/// # async fn f<A: fdrpc::Service, B: fdrpc::Service>(
/// #     listener: fdrpc::Listener, foo: A, bar: B,
/// # ) -> std::io::Result<()> {
/// fdrpc::Server::new().serve(listener, (foo, bar)).await
/// # }
/// ```
///
/// A call names its method `Service:method` (the multiplexed form) or `method`. In a set, a
/// plain name goes to the one service that has that method; a name several services have must
/// be called multiplexed. A single service takes both forms. Replies carry the plain name, as
/// Apache Thrift's multiplexed processor sends them.
pub trait ServiceSet: Send + Sync + 'static {
    /// The service that serves the call named `name`, and the method name within it; or why
    /// none does.
    #[doc(hidden)]
    fn route<'n>(&self, name: &'n str) -> Result<(&dyn Service, &'n str), String>;

    /// Adds every service of the set, and the types they use, to `idl`.
    #[doc(hidden)]
    fn describe(&self, idl: &mut Idl);
}

/// Routes `name` among `services`.
fn route<'s, 'n>(
    services: &[&'s dyn Service],
    name: &'n str,
) -> Result<(&'s dyn Service, &'n str), String> {
    if let Some((service, method)) = split_service(name) {
        return services
            .iter()
            .find(|s| s.name() == service)
            .map(|s| (*s, method))
            .ok_or_else(|| format!("no service `{service}` is served here"));
    }
    let mut having = services.iter().filter(|s| s.methods().contains(&name));
    match (having.next(), having.next()) {
        (Some(s), None) => Ok((*s, name)),
        (None, _) => Err(format!("unknown method `{name}`")),
        (Some(_), Some(_)) => Err(format!(
            "several services served here have a method `{name}`; call it as `Service:{name}`"
        )),
    }
}

impl<S: Service> ServiceSet for S {
    fn route<'n>(&self, name: &'n str) -> Result<(&dyn Service, &'n str), String> {
        match split_service(name) {
            Some((service, method)) if service == self.name() => Ok((self, method)),
            Some((service, _)) => Err(format!("no service `{service}` is served here")),
            None => Ok((self, name)),
        }
    }

    fn describe(&self, idl: &mut Idl) {
        Service::describe(self, idl);
    }
}

macro_rules! service_tuple {
    ($($s:ident $i:tt),*) => {
        impl<$($s: Service),*> ServiceSet for ($($s,)*) {
            fn route<'n>(&self, name: &'n str) -> Result<(&dyn Service, &'n str), String> {
                route(&[$(&self.$i),*], name)
            }

            fn describe(&self, idl: &mut Idl) {
                $(Service::describe(&self.$i, idl);)*
            }
        }
    };
}

service_tuple!(A 0, B 1);
service_tuple!(A 0, B 1, C 2);
service_tuple!(A 0, B 1, C 2, D 3);
service_tuple!(A 0, B 1, C 2, D 3, E 4);
service_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
service_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
service_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
