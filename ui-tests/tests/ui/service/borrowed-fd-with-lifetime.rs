use std::os::fd::BorrowedFd;

#[fdrpc::service]
trait Vault {
    async fn store<'a>(&self, fd: BorrowedFd<'a>) -> u32;
}

fn main() {}
