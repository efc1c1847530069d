struct Receipt {
    amount: u32,
}

#[fdrpc::service]
trait Bank {
    async fn deposit(&self, amount: u32) -> Receipt;
}

fn main() {}
