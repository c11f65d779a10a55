// mailsplit ships no types; this declares the parts Portcullis uses.
declare module 'mailsplit' {
  import { Transform } from 'node:stream';
  export interface MimeHeaders {
    get(key: string): string[];
    getFirst(key: string): string;
    hasHeader(key: string): boolean;
    add(key: string, value: string, index?: number): void;
    update(key: string, value: string): void;
    remove(key: string): void;
    build(): Buffer;
    getList(): Array<{ key: string; line: string }>;
  }
  export interface MimeNode {
    type: 'node';
    root: boolean;
    parentNode?: MimeNode;
    multipart: string | false;
    rfc822: boolean;
    /** For message/rfc822: true when mailsplit opened the attached message (its nodes follow). */
    messageNode?: boolean;
    encoding: string | false;
    contentType: string | false;
    charset: string | false;
    disposition: string | false;
    filename: string | false;
    headers: MimeHeaders;
    partNr: string[] | false;
    getHeaders(): Buffer;
    getDecoder(): Transform;
    getEncoder(encoding?: string): Transform;
    setContentType(contentType: string): void;
    setCharset(charset: string): void;
    setFilename(filename: string): void;
  }
  export type SplitterChunk = MimeNode | { type: 'data'; value: Buffer } | { type: 'body'; value: Buffer; node: MimeNode };
  export class Splitter extends Transform {
    constructor(options?: { ignoreEmbedded?: boolean; maxHeadSize?: number; maxChildNodes?: number });
  }
  export class Joiner extends Transform {
    constructor();
  }
}

// libqp ships no types either.
declare module 'libqp' {
  export function encode(buffer: Buffer | string): string;
  export function decode(input: string): Buffer;
  export function wrap(str: string, lineLength?: number): string;
}
