//! Workers a host lends an installation that has no built-in worker (one
//! served by `cuttle host`): a step that would run on the built-in worker
//! runs on one of them instead, registered in the installation as a worker
//! like any other. The host decides which worker, starts and wipes it.

use cuttle_model::Worker;
use cuttle_store::Store;
use futures::future::BoxFuture;

/// A worker lent for one step, and what keeps the loan: the host does not
/// count the worker idle until `hold` is dropped.
pub struct Lent {
    pub worker: Worker,
    pub hold: Box<dyn std::any::Any + Send + Sync>,
}

/// Told once when a loan has to wait for a worker to be freed: why, for
/// the step's log.
pub type Waiting<'a> = &'a (dyn Fn(String) + Send + Sync);

/// Lends workers to one installation.
pub trait WorkerLender: Send + Sync + std::fmt::Debug {
    /// A worker registered in `store`'s space `space_id` that trusts the
    /// installation's certificate `server_thumbprint`; or why there is none
    /// (e.g. every hosted worker stayed leased to other instances for as
    /// long as the host lets a step wait). When the loan has to wait it
    /// says so through `waiting`; dropping the future ends the wait.
    fn lend<'a>(
        &'a self,
        store: &'a Store,
        space_id: &'a str,
        server_thumbprint: &'a str,
        waiting: Waiting<'a>,
    ) -> BoxFuture<'a, Result<Lent, String>>;
}
