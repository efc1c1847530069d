#[fdrpc::service]
trait Session {
    async fn user(&self) -> String;
}

#[fdrpc::service]
trait Counter {
    async fn count(&self) -> i64;
}

struct Count;

impl Counter for Count {
    async fn count(&self) -> i64 {
        1
    }
}

fn serve(end: fdrpc::ServerEnd<SessionProtocol>) {
    end.serve_blocking(Count).unwrap();
}

fn main() {}
