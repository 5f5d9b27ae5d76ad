//! What a child process runs: [`Target`], implemented for functions and
//! closures of up to eight arguments.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A function a child process can run, with its arguments as one value.
///
/// Implemented for every `FnOnce` of zero to eight arguments whose
/// arguments and return value are serde types. The arguments travel as one
/// value: `()` for none, the argument itself for one, and a tuple for
/// several, as Python's `args=(...)`:
///
/// ```
/// # multiproc::init();
/// use multiproc::Process;
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// fn hello() -> &'static str { "hi" }
/// assert_eq!(Process::new(add, (2, 3)).start()?.join()?, 5);
/// assert_eq!(Process::new(|x: u8| x * 2, 21).start()?.join()?, 42);
/// # let _ = hello;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// The `Marker` parameter only tells the implementations apart (it is the
/// function's signature as a `fn` pointer type); it is always inferred. A
/// closure needs its argument types written out (`|x: u8| ...`) for the
/// inference to find them.
pub trait Target<Marker>: 'static {
    /// The arguments, as one value.
    type Args: Serialize + DeserializeOwned;
    /// What the function returns.
    type Output: Serialize + DeserializeOwned;
    /// Calls the function.
    fn call(self, args: Self::Args) -> Self::Output;
}

macro_rules! impl_target {
    ($( ($($a:ident),*) => $args:ty ;)*) => {$(
        impl<Func, Ret, $($a,)*> Target<fn($($a,)*) -> Ret> for Func
        where
            Func: FnOnce($($a,)*) -> Ret + 'static,
            Ret: Serialize + DeserializeOwned,
            $args: Serialize + DeserializeOwned,
        {
            type Args = $args;
            type Output = Ret;
            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, args: Self::Args) -> Ret {
                let ($($a,)*) = tuple_of(args);
                self($($a,)*)
            }
        }
    )*};
}

/// Identity for tuples; lets the macro destructure a single argument that
/// is not wrapped in a 1-tuple.
#[inline(always)]
fn tuple_of<T>(t: T) -> T {
    t
}

impl_target! {
    () => ();
    (A1, A2) => (A1, A2);
    (A1, A2, A3) => (A1, A2, A3);
    (A1, A2, A3, A4) => (A1, A2, A3, A4);
    (A1, A2, A3, A4, A5) => (A1, A2, A3, A4, A5);
    (A1, A2, A3, A4, A5, A6) => (A1, A2, A3, A4, A5, A6);
    (A1, A2, A3, A4, A5, A6, A7) => (A1, A2, A3, A4, A5, A6, A7);
    (A1, A2, A3, A4, A5, A6, A7, A8) => (A1, A2, A3, A4, A5, A6, A7, A8);
}

impl<Func, Ret, A1> Target<fn(A1) -> Ret> for Func
where
    Func: FnOnce(A1) -> Ret + 'static,
    Ret: Serialize + DeserializeOwned,
    A1: Serialize + DeserializeOwned,
{
    type Args = A1;
    type Output = Ret;
    fn call(self, args: A1) -> Ret {
        self(args)
    }
}
