use std::fs::File;

#[fdrpc::service]
trait Files {
    async fn open(&self, path: String) -> std::io::Result<File>;
}

fn main() {}
