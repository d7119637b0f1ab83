//! The shop: products with stock, and orders placed by a command that reserves the stock of
//! every line atomically (all lines or none, in one log batch), so concurrent buyers can never
//! oversell. Cancelling an order returns its stock.
//!
//! ```sh
//! cargo run --release --example shop                 # http://127.0.0.1:8080, data in data/shop/
//! ```
//!
//! Routes: `/api/products` (full CRUD), `GET /api/orders[/{id}]`, `POST /api/orders` (place:
//! `{"customer": "...", "lines": [{"product_id": 1, "quantity": 2}]}`; 409 when out of
//! stock), `POST /api/orders/{id}/cancel`.
use lithair::app::{Id, Params, Rejection, Tx};
use lithair::prelude::*;

/// Something for sale.
#[derive(Model, Clone, Debug)]
pub struct Product {
    /// Assigned by the server.
    #[db(primary_key)]
    pub id: u64,
    /// Stock-keeping unit: unique.
    #[db(unique)]
    #[http(validate = "len(1..=40)")]
    pub sku: String,
    /// Name.
    #[http(validate = "len(1..=200)")]
    pub name: String,
    /// Unit price.
    #[http(validate = "range(0..)")]
    pub price: f64,
    /// Units available.
    #[db(default)]
    pub stock: u64,
}

/// One line of an order.
#[derive(Json, Binary, Clone, Debug, PartialEq)]
pub struct OrderLine {
    /// Which product.
    pub product_id: u64,
    /// How many units.
    pub quantity: u64,
}

/// An order: placed by the `place` command, never written directly.
#[derive(Model, Clone, Debug)]
pub struct Order {
    /// Assigned by the server.
    #[db(primary_key)]
    pub id: u64,
    /// Who ordered.
    #[db(indexed)]
    pub customer: String,
    /// What.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines at the prices of the moment.
    pub total: f64,
    /// `placed` or `cancelled`.
    #[db(indexed)]
    pub status: String,
    /// When it was placed (ms since the Unix epoch, decided by the sequencer).
    pub placed_at: u64,
}

/// Input of `POST /api/orders`.
#[derive(Json, Clone, Debug)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer: String,
    /// What.
    pub lines: Vec<OrderLine>,
}

/// Most lines in one order.
const ORDER_LINES_MAX: usize = 100;

fn invalid(message: String) -> Rejection {
    Rejection::Domain {
        status: 422,
        message,
    }
}

/// Which way a stock change goes.
#[derive(Clone, Copy)]
enum Stock {
    /// An order takes units.
    Reserve,
    /// A cancellation gives them back.
    Release,
}

/// Changes a product's stock by `quantity` inside the transaction, in u64 arithmetic that
/// cannot wrap: a stock past `i64::MAX` is still a stock.
fn adjust_stock(
    tx: &mut Tx<'_>,
    product_id: u64,
    way: Stock,
    quantity: u64,
) -> Result<Product, Rejection> {
    let id = Id::Int(product_id);
    let product: Product = tx
        .get(&id)
        .ok_or_else(|| invalid(format!("product {product_id} does not exist")))?;
    let stock = match way {
        Stock::Reserve => product.stock.checked_sub(quantity).ok_or_else(|| {
            let message = format!(
                "only {} of {} left, {quantity} requested",
                product.stock, product.sku
            );
            Rejection::Domain {
                status: 409,
                message,
            }
        })?,
        Stock::Release => product.stock.checked_add(quantity).ok_or_else(|| {
            let message = format!("the stock of {} cannot hold {quantity} more", product.sku);
            Rejection::Domain {
                status: 409,
                message,
            }
        })?,
    };
    let patch = ProductPatch {
        stock: Some(stock),
        ..ProductPatch::default()
    };
    tx.update::<Product>(&id, patch)
}

/// Place an order, reserving stock.
///
/// Reserves every line's stock, then records the order; all in one batch.
#[command(POST "/api/orders", status = 201)]
fn place(tx: &mut Tx<'_>, input: &PlaceOrder, _: &Params) -> Result<Order, Rejection> {
    if input.customer.trim().is_empty() {
        return Err(invalid("customer is required".into()));
    }
    if input.lines.is_empty() || input.lines.len() > ORDER_LINES_MAX {
        return Err(invalid(format!(
            "an order has 1 to {ORDER_LINES_MAX} lines"
        )));
    }
    let mut total = 0.0;
    for line in &input.lines {
        if line.quantity == 0 {
            return Err(invalid(format!(
                "line for product {} orders nothing",
                line.product_id
            )));
        }
        let product = adjust_stock(tx, line.product_id, Stock::Reserve, line.quantity)?;
        total += product.price * line.quantity as f64;
    }
    tx.create(Order {
        id: 0,
        customer: input.customer.clone(),
        lines: input.lines.clone(),
        total,
        status: "placed".into(),
        placed_at: tx.timestamp_ms(),
    })
}

/// Cancel an order, returning stock.
///
/// Only a placed order can be cancelled; every line's stock comes back in the same batch.
#[command(POST "/api/orders/{id}/cancel")]
fn cancel(tx: &mut Tx<'_>, _: &(), params: &Params) -> Result<Order, Rejection> {
    let id = params.id::<Order>("id")?;
    let order: Order = tx.get(&id).ok_or_else(|| Rejection::NotFound {
        model: "Order",
        id: id.clone(),
    })?;
    if order.status != "placed" {
        return Err(Rejection::Domain {
            status: 409,
            message: format!("order {id} is {}", order.status),
        });
    }
    for line in &order.lines {
        adjust_stock(tx, line.product_id, Stock::Release, line.quantity)?;
    }
    let patch = OrderPatch {
        status: Some("cancelled".into()),
        ..OrderPatch::default()
    };
    tx.update::<Order>(&id, patch)
}

/// The shop app; tests build it too.
pub fn app() -> lithair::App {
    lithair::App::new("shop")
        .model::<Product>()
        .model_read_only::<Order>()
        .commands([place_route(), cancel_route()])
}

fn main() -> std::process::ExitCode {
    app().run()
}
