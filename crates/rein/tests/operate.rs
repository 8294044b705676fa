//! The Operator's rule for taking runs up: a run this process is driving is
//! held, even though its lease names this very process.

use rein::store::SqliteJournal;
use rein::{Agent, OperateError, Operator, RunId, RunStatus, Store};
use rein_testkit::scripted::{self, FnModel};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_this_process_drives_is_held_and_free_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteJournal::open(dir.path().join("rein.db")).unwrap());
    let operator = Arc::new(Operator::new(store.clone(), rein::providers::default_client().unwrap()));
    // A model slow enough to look at the run while it is driven.
    let model = FnModel::new(|_| {
        std::thread::sleep(Duration::from_millis(300));
        Ok(scripted::text("done"))
    });
    let agent = Arc::new(Agent::builder("slow").model(model).build().unwrap());
    let run = RunId::new();
    let driver = {
        let (operator, agent) = (operator.clone(), agent.clone());
        tokio::spawn(async move {
            let runtime = operator.runtime();
            operator.start(&runtime, &agent, "go".into(), run, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    match operator.check_free(run, false).await {
        Err(OperateError::Held { .. }) => {}
        other => panic!("a run driven here is held, got {other:?}"),
    }
    let outcome = driver.await.unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(operator.check_free(run, false).await.is_ok(), "once it returned, nothing holds it");
}
