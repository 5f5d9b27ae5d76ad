//! The seeds' Pipe examples in Rust: `cargo run --example pipe`.
//!
//! 1. A child sends `[42, None, 'hello']` to its parent, then prints what
//!    it receives until it is terminated.
//! 2. One process sends ten strings through a duplex pipe, another prints
//!    them; the receiver stops by itself when the sender's end closes.

use multiproc::Process;
use multiproc::connection::{self, Connection};
use serde::{Deserialize, Serialize};

/// What travels: Python sends any object; Rust says which ones.
#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Greeting(i32, Option<i32>, String),
    Text(String),
}

fn f(conn: Connection<Msg>) {
    conn.send(&Msg::Greeting(42, None, "hello".into())).unwrap();
    while let Ok(msg) = conn.recv() {
        println!("child got {msg:?}");
    }
}

fn func1(pipe: Connection<String>, y: String) {
    for x in 0..10 {
        pipe.send(&format!("{y}{x}")).unwrap();
    }
}

fn func2(pipe: Connection<String>) -> usize {
    let mut n = 0;
    // recv() fails with Eof once the sender's end is closed: no endless loop.
    for msg in &pipe {
        println!("func2 recv {msg}");
        n += 1;
    }
    n
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    let (parent_conn, child_conn) = connection::pipe::<Msg>()?;
    let p = Process::new(f, child_conn).start()?;
    println!("parent got {:?}", parent_conn.recv()?); // Greeting(42, None, "hello")
    parent_conn.send(&Msg::Text("666".into()))?;
    // Python's example ends the endless child with terminate(). Here the
    // child's loop ends by itself when our end closes, so join() suffices.
    drop(parent_conn);
    p.join()?;

    let (a, b) = connection::pipe::<String>()?;
    let sender = Process::new(func1, (a, "oyp".to_string())).start()?;
    let receiver = Process::new(func2, b).start()?;
    sender.join()?;
    println!("func2 received {} messages", receiver.join()?);
    Ok(())
}
