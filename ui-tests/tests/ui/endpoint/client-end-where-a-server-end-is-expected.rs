#[fdrpc::service]
trait Session {
    async fn user(&self) -> String;
}

struct Alice;

impl Session for Alice {
    async fn user(&self) -> String {
        "alice".into()
    }
}

fn serve(cx: &fdrpc::Context) {
    let (client, _server) = fdrpc::endpoints::<SessionProtocol>().unwrap();
    cx.serve(client, Alice).unwrap();
}

fn main() {}
