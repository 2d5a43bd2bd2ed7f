/**
 * The admin CLI, `machine-id ctl`: talks to the auth service only through
 * protocol's client.
 */

export { ctlCommand } from "./commands.ts";
export { connect } from "./connect.ts";
