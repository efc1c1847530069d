#[derive(fdrpc::Message)]
struct Wrapper<T> {
    value: T,
}

fn main() {}
