//! The group-commit writers on their own, with a job of this test's making, on SQLite and
//! PostgreSQL: an answer is given only for what is committed, an answer not kept leaves
//! nothing, and a write that changes other rows than its job expected is never answered
//! as done.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use lic_portal::PortalError;
use lic_portal::db::Db;
use lic_portal::sql::{Val, Write, stmt};
use lic_portal::storage::writer::{Job, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Insert the key (expects one row inserted).
    Put,
    /// Decide to insert, then answer with something not kept.
    Undecided,
    /// Expect an update to change a row that does not exist.
    Broken,
}

struct Toy {
    key: String,
    kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Put,
    AlreadyThere,
    NotKept,
}

impl Job for Toy {
    type Output = Answer;
    type Changes = ();

    fn license(&self) -> &str {
        "no-such-license"
    }

    fn reads(&self, _row_locks: bool) -> Vec<(String, Vec<Val>)> {
        vec![stmt(
            "SELECT count(*) FROM toy WHERE k = $1",
            vec![self.key.as_str().into()],
        )]
    }

    fn stale(&self, (): &()) -> bool {
        false
    }

    fn decide(
        &self,
        rows: Vec<Vec<Vec<Val>>>,
        (): &(),
        (): &mut (),
        writes: &mut Vec<Write>,
    ) -> Result<Answer, PortalError> {
        let there = rows[0][0][0].int().unwrap() > 0;
        let insert = Write::expecting(
            stmt(
                "INSERT INTO toy (k) VALUES ($1)",
                vec![self.key.as_str().into()],
            ),
            1,
            "the key appeared meanwhile",
        );
        match self.kind {
            _ if there => Ok(Answer::AlreadyThere),
            Kind::Put => {
                writes.push(insert);
                Ok(Answer::Put)
            }
            Kind::Undecided => {
                writes.push(insert);
                Ok(Answer::NotKept)
            }
            Kind::Broken => {
                writes.push(insert);
                writes.push(Write::expecting(
                    stmt(
                        "UPDATE toy SET k = k WHERE k = $1",
                        vec!["never-inserted".into()],
                    ),
                    1,
                    "the row to update is gone",
                ));
                Ok(Answer::Put)
            }
        }
    }

    fn merge((): &mut (), (): ()) {}

    fn keeps(out: &Answer) -> bool {
        *out == Answer::Put
    }
}

async fn keys(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT k FROM toy ORDER BY k")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_answers_only_for_what_it_committed() {
    for t in common::backends().await {
        let db = Db::connect(&t.url).await.unwrap();
        sqlx::query("CREATE TABLE toy (k TEXT PRIMARY KEY)")
            .execute(db.pool())
            .await
            .unwrap();
        let writer = Arc::new(Writer::<Toy>::open(&db).await.unwrap());
        let put = |key: &str, kind| Toy {
            key: key.into(),
            kind,
        };

        // One at a time: each kind's own outcome.
        assert_eq!(
            writer.write(put("a", Kind::Put)).await.unwrap(),
            Answer::Put
        );
        assert_eq!(
            writer.write(put("a", Kind::Put)).await.unwrap(),
            Answer::AlreadyThere
        );
        assert_eq!(
            writer.write(put("b", Kind::Undecided)).await.unwrap(),
            Answer::NotKept
        );
        let broken = writer.write(put("c", Kind::Broken)).await.unwrap_err();
        assert_eq!(broken.code(), "conflict", "{}: {broken}", t.name);
        assert_eq!(keys(&db).await, ["a"], "{}: only the kept write", t.name);

        // Many at once, a broken one among them: whatever shares its group, every job
        // answered as put is committed and every other one left nothing.
        let mut tasks = Vec::new();
        for i in 0..64 {
            let writer = Arc::clone(&writer);
            let kind = match i % 16 {
                7 => Kind::Broken,
                3 => Kind::Undecided,
                _ => Kind::Put,
            };
            let key = format!("k{i:02}");
            tasks.push(tokio::spawn(async move {
                let answer = writer
                    .write(Toy {
                        key: key.clone(),
                        kind,
                    })
                    .await;
                (key, kind, answer)
            }));
        }
        let mut expected = vec!["a".to_string()];
        for task in tasks {
            let (key, kind, answer) = task.await.unwrap();
            match (kind, answer) {
                (Kind::Put, Ok(Answer::Put)) => expected.push(key),
                (Kind::Put | Kind::Undecided, Err(e)) => {
                    // (On PostgreSQL, when it shared a group with a broken job.)
                    assert_eq!(e.code(), "conflict", "{}: {e}", t.name);
                    assert!(e.to_string().contains("send it again"), "{}: {e}", t.name);
                }
                (Kind::Undecided, Ok(Answer::NotKept)) | (Kind::Broken, Err(_)) => {}
                (kind, answer) => panic!("{}: {key} ({kind:?}) answered {answer:?}", t.name),
            }
        }
        expected.sort();
        assert_eq!(keys(&db).await, expected, "{}", t.name);
        // After a broken group the writer goes on.
        assert_eq!(
            writer.write(put("z", Kind::Put)).await.unwrap(),
            Answer::Put
        );
    }
}
