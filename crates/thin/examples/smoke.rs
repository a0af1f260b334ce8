use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::*;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let n: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1000);
    let dev = Arc::new(FileDevice::create(&p, 64 << 20).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(100_000).unwrap();
    md.create_thin(DevId(1)).unwrap();
    for i in 0..n {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(1), VirtBlock(i * 3), b).unwrap();
    }
    md.commit().unwrap();
    md.create_snap(DevId(2), DevId(1)).unwrap();
    for i in 0..n / 2 {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(2), VirtBlock(i * 6), b).unwrap();
    }
    md.remove_range(DevId(1), VirtBlock(0), VirtBlock(n))
        .unwrap();
    md.set_transaction_id(0, 5).unwrap();
    md.commit().unwrap();
    md.close().unwrap();
}
