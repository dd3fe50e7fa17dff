//! The physical limit `bench/backup.sh` compares berth's backup and restore against: the same
//! bytes moved straight between a file and the same S3 server by the same client code
//! (`Repository::upload` / `download`), with no action, member or manifest in between.
//!
//! `s3copy up|down ENDPOINT BUCKET KEY FILE` with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! and `AWS_REGION` in the environment; prints the bytes, seconds and MiB/s.

use std::time::Instant;

use berth_backup::{Credentials, Repository};
use berth_core::spec::RepositorySpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [way, endpoint, bucket, key, file] = args.as_slice() else {
        return Err("usage: s3copy up|down ENDPOINT BUCKET KEY FILE".into());
    };
    let spec = RepositorySpec {
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
        prefix: String::new(),
        region: std::env::var("AWS_REGION")?,
        path_style: true,
        credentials: None,
        carrier: Default::default(),
    };
    let credentials = Credentials {
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY")?,
    };
    let repo = Repository::open(&spec, bucket, Some(&credentials))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let began = Instant::now();
    let stored = runtime.block_on(async {
        if way == "up" {
            let mut data = tokio::fs::File::open(file).await?;
            Ok::<_, Box<dyn std::error::Error>>(repo.upload(key, &mut data).await?)
        } else {
            let mut out = tokio::fs::File::create(file).await?;
            Ok(repo.download(key, &mut out).await?)
        }
    })?;
    let secs = began.elapsed().as_secs_f64();
    let mib = stored.size as f64 / f64::from(1 << 20);
    println!(
        "{way} {} bytes in {secs:.2}s: {:.1} MiB/s",
        stored.size,
        mib / secs
    );
    Ok(())
}
