//! Clock skew: candidates judge expiry by their own clock from when they last saw the
//! record change, never by the holder's timestamps. A "ghost" holder with a wrong wall
//! clock is simulated by writing the record directly.

use k8s_openapi::{
    api::coordination::v1::LeaseSpec,
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::api::PostParams;

use super::*;

const YEAR: SignedDuration = SignedDuration::from_hours(24 * 365);

/// Writes a lease held by `ghost`, renewed at `renew_time` for `seconds`.
async fn ghost_lease(client: &Client, renew_time: Timestamp, seconds: i32) {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("lock".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("ghost".into()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(renew_time)),
            renew_time: Some(MicroTime(renew_time)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    };
    Api::<Lease>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the ghost's lease");
}

#[tokio::test(start_paused = true)]
async fn a_record_stamped_a_year_ahead_still_expires_by_the_candidates_clock() {
    let client = ApiServer::new().client();
    ghost_lease(&client, Timestamp::now() + YEAR, 15).await;
    let started = Instant::now();
    let b = elector(&client, "b").spawn();
    tokio::time::sleep(Duration::from_millis(14_900)).await;
    assert!(!b.is_leader(), "a candidate waits a full lease duration");
    assert_eq!(b.subscribe().borrow().holder(), Some("ghost"));
    b.leading().await;
    let took = started.elapsed();
    assert!(
        took >= LEASE && took <= LEASE + POLL,
        "took over after {took:?}"
    );
    assert_eq!(transitions(&lease(&client).await), Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_clock_is_a_year_behind_keeps_the_lease_while_it_renews() {
    let client = ApiServer::new().client();
    let stamped = Timestamp::now() - YEAR;
    ghost_lease(&client, stamped, 15).await;
    // The ghost renews every 2 s; its clock says a year ago.
    let ghost_client = client.clone();
    let ghost = tokio::spawn(async move {
        let leases = Api::<Lease>::namespaced(ghost_client, "default");
        let mut renew_time = stamped;
        loop {
            tokio::time::sleep(RETRY).await;
            let mut lease = leases.get("lock").await.expect("read the lease");
            renew_time += SignedDuration::from_secs(2);
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(MicroTime(renew_time));
            }
            leases
                .replace("lock", &PostParams::default(), &lease)
                .await
                .expect("the ghost renews");
        }
    });
    let b = elector(&client, "b").spawn();
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(
        !b.is_leader(),
        "a renewing holder keeps the lease whatever its clock says"
    );
    assert_eq!(holder(&lease(&client).await), Some("ghost"));

    ghost.abort();
    let _ = ghost.await;
    let stopped = Instant::now();
    b.leading().await;
    let took = stopped.elapsed();
    assert!(
        took >= EARLIEST_TAKEOVER && took <= LEASE + POLL,
        "took over after {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_holders_lease_duration_wins_over_a_shorter_one_of_the_candidate() {
    let client = ApiServer::new().client();
    ghost_lease(&client, Timestamp::now(), 60).await;
    let started = Instant::now();
    let b = elector(&client, "b").spawn();
    b.leading().await;
    let took = started.elapsed();
    let sixty = Duration::from_secs(60);
    assert!(
        took >= sixty && took <= sixty + POLL,
        "took over after {took:?}"
    );
}
