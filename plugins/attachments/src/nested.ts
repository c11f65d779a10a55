import type { NestedOpeners } from './inspector.js';
import { inspectContainer } from './archive.js';
import { scanMessageFile } from './message-scan.js';

/** The openers an inspector uses for nested archives and attached messages (see `InspectContext.open`). */
export const nestedOpeners: NestedOpeners = { container: inspectContainer, message: scanMessageFile };
